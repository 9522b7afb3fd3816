"""What the tests share: quantize a tiny model, run the CLI (in a fresh process or in this one), read a checkpoint.

    quantize(model, out, method=..., scheme=...)   # the library call the CLI makes; returns the output directory
    run_cli("validate", str(ckpt))                 # `python -m quantize ...` in a fresh process, as a user runs it
    run_main(capsys, str(model), "--scheme", ...)  # the same command line in this process (no torch import per call)
    Cases()                                        # a table of cases for one parametrized test (test_errors.BAD_INPUT)

run_cli and run_main return the same subprocess.CompletedProcess, so `error_line` and the assertions on it do
not depend on which one ran. Use run_main for errors raised before any heavy work, run_cli where the test is
about the real entry point (a fresh interpreter, the environment, what reaches the terminal) or must start vLLM.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quantize(model: str | Path, output_dir: str | Path | None = None, *, output_root=None, **options) -> Path:
    """Quantize `model` (a tiny-model fixture, or any model id) in this process, with what `python -m quantize`
    calls after parsing its arguments (quantizer.run); returns the output directory.

    `options` are Recipe fields (method, scheme, groupsize, skip_experts, extra_ignore), or `recipe_file=PATH`
    (what `--recipe PATH` loads), and Job fields (engine, shard_bytes, dtype, overwrite, calibration, ...); unset
    ones keep their defaults, except the engine: "load" unless given (Job's and the CLI's default is "auto").
    Without `output_dir`, the output gets the seed's name under `output_root`, as on the command line."""
    from quantize import quantizer, recipe_file
    from quantize.recipe import Recipe

    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    chosen = {k: v for k, v in options.items() if k in recipe_fields}
    path = options.pop("recipe_file", None)
    options.setdefault("engine", "load")
    recipe = recipe_file.load(path, chosen.get("skip_experts", False)) if path else Recipe(**chosen)
    job = quantizer.Job(
        model_id=str(model),
        recipe=recipe,
        output_dir=quantizer.output_path(str(model), recipe, output_dir, output_root),
        **{k: v for k, v in options.items() if k not in recipe_fields},
    )
    return quantizer.run(job)


def run_cli(*args, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m quantize ARGS` in a fresh process, as a user would run it (offline unless `env` says not)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "quantize", *map(str, args)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """`python -m quantize ARGS` in this process, through quantize.cli.main: the same result as run_cli, in a
    fraction of the time, and a test can monkeypatch what it calls. Environment variables that libraries read
    when imported (HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME) do not apply here: such tests use run_cli."""
    from quantize import cli

    capsys.readouterr()  # only what this command prints
    argv = list(map(str, args))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "quantize", *argv], code, out, err)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line of stderr: where the CLI prints its one-line error."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def read_tensors(directory: Path) -> dict:
    """Every tensor of a checkpoint directory, by name (all shards)."""
    from safetensors import safe_open

    out = {}
    for shard in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(shard, "pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


def slow_if_deepseek_mse(arch: str, method: str) -> list:
    """Marks for a test parameter: `slow` for the mse method on the tiny DeepSeek (fixture `tiny_deepseek`),
    whose observer searches a scale for every row of every expert: a few seconds on an idle CPU, up to a minute
    on a busy one (torch's threads wait on each other)."""
    import pytest  # here, not at the top: tests/arm64/check.py runs without pytest

    return [pytest.mark.slow] if (arch, method) == ("tiny_deepseek", "mse") else []


class Cases(list):
    """A table of test cases, each a function named after what it sets up; a test runs once per case."""

    def add(self, case):
        """Decorator: append `case` to the table."""
        self.append(case)
        return case

    def parametrize(self, argname: str):
        """Decorator: run the test once per case, passing the case function as `argname`."""
        import pytest

        return pytest.mark.parametrize(argname, list(self), ids=[case.__name__ for case in self])
