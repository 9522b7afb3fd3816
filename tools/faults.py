"""Planted faults: copies of a good W4A8 checkpoint with one thing wrong, which `smoke --reference GOOD` must reject.

Each fault stands for a way vLLM (or a converter) could misread a correct checkpoint: a wrong scale, a wrong
sign or packing of the int4 values, scales applied to the wrong group, experts mixed up. The reference is
built from the good checkpoint, vLLM serves the faulty one, so the check sees exactly "vLLM computes something
other than what the checkpoint means".

    python -m tools.faults GOOD_CHECKPOINT [--work DIR] [--layer MODULE] [--markdown FILE]   # the whole matrix

Exit 0 when the good checkpoint passes and every fault fails; used by `make fault-matrix` (SmolLM2-135M) and,
fault by fault, by tests/e2e/test_smoke.py (tiny models) and tests/arm64/check.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from quantize.host import cpu_model

ROOT = Path(__file__).resolve().parents[1]  # where `python -m quantize` imports this checkout's package


def _edit(ckpt: Path, edit) -> None:
    """Apply `edit(tensors) -> names changed` to every shard of `ckpt`; rewrite the shards it changed."""
    changed = False
    for shard in sorted(ckpt.glob("*.safetensors")):
        with safe_open(shard, "pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            metadata = fh.metadata()
        if edit(tensors):
            save_file(tensors, shard, metadata=metadata)
            changed = True
    if not changed:
        raise ValueError(f"the fault found nothing to change in {ckpt}")


def scales(layer: str, factor: float):
    def edit(t):
        if f"{layer}.weight_scale" in t:
            t[f"{layer}.weight_scale"] = (t[f"{layer}.weight_scale"].float() * factor).to(
                t[f"{layer}.weight_scale"].dtype
            )
            return True

    return edit


def negate(layer: str):
    def edit(t):
        if f"{layer}.weight" in t:
            t[f"{layer}.weight"] = (-t[f"{layer}.weight"]).clamp(-8, 7)
            return True

    return edit


def shift_groups(layer: str):
    """Each row's group scales moved one group along (the last group's scale goes to the first)."""

    def edit(t):
        scale = t.get(f"{layer}.weight_scale")
        if scale is not None:
            if scale.shape[1] < 2:
                raise ValueError(f"{layer} is channelwise: no groups to shift")
            t[f"{layer}.weight_scale"] = scale.roll(1, dims=1).contiguous()
            return True

    return edit


def swap_experts(layer: str, a: int = 1, b: int = 2):
    """Experts a and b of the MoE block `layer` (e.g. model.layers.1.mlp) exchange weights and scales.

    The default pair carries traffic on smoke's prompts in the tiny DeepSeek-V2: its expert 0 gets little, so
    swapping experts 0 and 1 moves the float32 reference by only 0.033 nats/token, and no output check can see
    a swap of experts that are not used (docs/smoke-check.md)."""

    def edit(t):
        names = [n for n in t if n.startswith(f"{layer}.experts.{a}.")]
        for name in names:
            other = name.replace(f".experts.{a}.", f".experts.{b}.")
            t[name], t[other] = t[other], t[name]
        return bool(names)

    return edit


def matrix(layer: str, groupwise: bool, moe_layer: str | None = None) -> dict:
    """The fault matrix of issue 12, for one Linear `layer` (and one MoE block, when given)."""
    faults = {
        "scales x4": scales(layer, 4.0),
        "scales x1.5": scales(layer, 1.5),
        "int4 values negated": negate(layer),
    }
    if groupwise:
        faults["group scales shifted by one group"] = shift_groups(layer)
    if moe_layer:
        faults["experts 1 and 2 swapped"] = swap_experts(moe_layer)
    return faults


def plant(good: Path, bad: Path, edit) -> Path:
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(good, bad)
    _edit(bad, edit)
    return bad


def smoke(*args, timeout: float | None = None) -> tuple[int, dict, str]:
    """`python -m quantize smoke ARGS --eager` in a fresh process: exit code, JSON report (stdout), stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "quantize", "smoke", *map(str, args), "--eager"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, report, result.stderr


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in name.split(".")]


def default_layer(good: Path) -> str:
    """The middle quantized down_proj (or the middle quantized module) of the checkpoint."""
    from quantize import checkpoint

    reader = checkpoint.Reader(good)
    modules = sorted(checkpoint.quantized_modules({n: None for n in reader.index}), key=_natural)
    down = [m for m in modules if m.endswith("down_proj") and ".experts." not in m] or modules
    return down[(len(down) - 1) // 2]


def table(rows: list[tuple[str, int, dict, float]]) -> str:
    """Markdown: per checkpoint, smoke's exit code and both statistics of its reference check."""
    lines = [
        "| checkpoint | exit | worst layer error (tol.) | layer | mean KL nats/token (tol.) | top-1 | seconds |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, code, report, seconds in rows:
        layers = report.get("agreement", {}).get("layers", {})
        lp = report.get("agreement", {}).get("logprobs", {})
        lines.append(
            f"| {name} | {code} | {layers.get('value')} ({layers.get('tolerance')}) | {layers.get('worst_layer')} | "
            f"{lp.get('value')} ({lp.get('tolerance')}) | {lp.get('top1_matches')}/{lp.get('positions')} | "
            f"{seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("good", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fault-matrix"))
    parser.add_argument("--layer", help="the Linear module to damage (default: the middle down_proj)")
    parser.add_argument("--moe-layer", help="an MoE block whose experts 1 and 2 to swap (arm64 only)")
    parser.add_argument("--markdown", type=Path, help="also write the table, with the machine, to this file")
    args = parser.parse_args(argv)
    config = json.loads((args.good / "config.json").read_text())["quantization_config"]
    group = next(iter(config["config_groups"].values()))["weights"]["strategy"] == "group"
    layer = args.layer or default_layer(args.good)
    rows, ok = [], True
    t0 = time.perf_counter()
    code, report, err = smoke(args.good, "--reference", args.good)
    rows.append(("good checkpoint", code, report, time.perf_counter() - t0))
    ok &= code == 0
    for name, edit in matrix(layer, group, args.moe_layer).items():
        bad = plant(args.good, args.work / name.replace(" ", "-"), edit)
        t0 = time.perf_counter()
        code, report, err = smoke(bad, "--reference", args.good)
        rows.append((name, code, report, time.perf_counter() - t0))
        ok &= code == 1 and report.get("agreement", {}).get("passed") is False
        shutil.rmtree(bad)
    text = (
        f"`python -m tools.faults {args.good}` on {platform.machine()} ({cpu_model()}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d}; damaged layer `{layer}`; "
        f"fault matrix {'passed' if ok else 'FAILED'}.\n\n{table(rows)}\n"
    )
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
