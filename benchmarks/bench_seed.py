"""Seed script vs `python -m quantize`, side by side in one run, on the same model: wall time, peak RSS of
each process (from wait4's rusage) and output size. `make bench-seed` runs it.

The model is a random-weight Llama built offline, with SmolLM-135M's shapes (326 MB bf16, the default) or a
1.1B Llama-style shape (`--shape llama-1b`, 2.2 GB bf16) where weights dominate memory.
Prints a Markdown table; ratios are quantize / seed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "benchmarks" / "seed" / "quantize_vllm_models.py"


SHAPES = {
    "smollm-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                        num_attention_heads=9, num_key_value_heads=3),
    "llama-1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4),
}  # fmt: skip


def build_model(path: Path, shape: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.tiny_models import corpus, train_tokenizer

    config = LlamaConfig(
        **SHAPES[shape], max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path)
    train_tokenizer(corpus()).save_pretrained(path)
    return path


def measure(cmd: list[str], cwd: Path) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode()[-3000:])
    return wall, usage.ru_maxrss * 1024, proc.returncode


def size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary directory)")
    parser.add_argument("--method", default="minmax", choices=["minmax", "mse"])
    parser.add_argument("--scheme", default="channelwise", choices=["channelwise", "groupwise"])
    parser.add_argument("--shape", default="smollm-135m", choices=sorted(SHAPES))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = work / f"{args.shape}-shape"
        if not (model / "config.json").exists():
            build_model(model, args.shape)
        opts = ["--method", args.method, "--scheme", args.scheme]
        (work / "seed").mkdir(exist_ok=True)
        (work / "ours").mkdir(exist_ok=True)
        ours = [sys.executable, "-m", "quantize", str(model), *opts, "--overwrite", "--output-root", str(work / "ours")]
        runs = {
            "seed script": ([sys.executable, str(SEED), str(model), *opts], work / "seed"),
            "python -m quantize": (ours, ROOT),
        }
        rows = {}
        for name, (cmd, cwd) in runs.items():
            wall, rss, code = measure(cmd, cwd)
            if code:
                print(f"bench-seed: {name} failed with exit code {code}", file=sys.stderr)
                return 1
            out = next((cwd if name == "seed script" else work / "ours").glob("*-w4a8dyn-*"))
            rows[name] = (wall, rss, size(out))
        print(f"model: {model.name} ({size(model) / 1e6:.0f} MB bf16), {args.method} {args.scheme}, "
              f"{os.cpu_count()} CPUs, one run each\n")  # fmt: skip
        print("| tool | wall time (s) | peak RSS (GiB) | output (MB) |")
        print("|---|---:|---:|---:|")
        for name, (wall, rss, out) in rows.items():
            print(f"| {name} | {wall:.1f} | {rss / 2**30:.2f} | {out / 1e6:.0f} |")
        (sw, sr, so), (qw, qr, qo) = rows.values()
        print(f"| ratio quantize/seed | {qw / sw:.2f} | {qr / sr:.2f} | {qo / so:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
