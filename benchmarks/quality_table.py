"""The quality table: what each method costs on a real model, every figure from one run of this script.

For each variant (minmax/mse x channelwise/groupwise-32, gptq and imatrix groupwise-32) it runs the real CLI as a user
would: `python -m quantize MODEL ...` (wall time and peak RSS from the checkpoint's manifest), then
`python -m quantize eval DIR --reference MODEL` (perplexity through vLLM, top-1 agreement, KL). The bf16 row
is the reference's own perplexity from the same evaluations.

    python -m benchmarks.quality_table --model models/smollm2-135m --calibration models/wikipedia.jsonl \
        --markdown docs/quality-table.md [--max-windows 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "minmax channelwise": ["--method", "minmax", "--scheme", "channelwise"],
    "minmax g32": ["--method", "minmax", "--scheme", "groupwise", "--groupsize", "32"],
    "mse channelwise": ["--method", "mse", "--scheme", "channelwise"],
    "mse g32": ["--method", "mse", "--scheme", "groupwise", "--groupsize", "32"],
    # 256 windows of 512 tokens: 131 k tokens, 85x the widest SmolLM2 layer's inputs (see quantizer.py)
    "gptq g32": ["--method", "gptq", "--scheme", "groupwise", "--groupsize", "32", "--calibration-samples", "256"],
    "imatrix g32": [
        "--method",
        "imatrix",
        "--scheme",
        "groupwise",
        "--groupsize",
        "32",
        "--calibration-samples",
        "256",
    ],
}


def cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "quantize", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: python -m quantize {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def row(name: str, model: Path, out: Path, eval_args: list[str], calibration: str) -> dict:
    target = out / name.replace(" ", "-")
    calibrated = ["--calibration", calibration] if "gptq" in VARIANTS[name] else []
    cli(str(model), *VARIANTS[name], *calibrated, "--output-dir", str(target), "--overwrite")
    info = json.loads((target / "quantization-manifest.json").read_text())
    report = json.loads(cli("eval", str(target), "--reference", str(model), *eval_args).stdout)
    return {
        "variant": name,
        "engine": info["arguments"]["engine"],
        "quantize_s": info["timings_s"]["total"],
        "peak_rss_gib": info["peak_rss_bytes"] / 2**30,
        **report["metrics"],
    }


def markdown(model: Path, rows: list[dict], eval_args: list[str], calibration: str, seconds: float) -> str:
    base = rows[0]
    lines = [
        f"| {model.name} | perplexity | increase over bf16 | top-1 agreement | mean KL | quantize time | peak RSS |",
        "|---|---|---|---|---|---|---|",
        f"| bf16 (reference) | {base['perplexity_reference']:.2f} | | | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['perplexity_quantized']:.2f} | {r['perplexity_increase_pct']:+.1f}% | "
            f"{100 * r['top1_agreement']:.1f}% | {r['mean_kl_divergence']:.3f} | {r['quantize_s']:.0f} s "
            f"({r['engine']}) | {r['peak_rss_gib']:.2f} GiB |"
        )
    lines += [
        "",
        f"{base['tokens_scored']} tokens of the built-in evaluation corpus scored through vLLM "
        f"(`python -m quantize eval {' '.join(eval_args)}`), W4A8 dynamic (int8 per-token activations) for every "
        f"quantized row; gptq calibrated on `{calibration}`; {platform.machine()}, {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.0f} min for the table (`python -m benchmarks.quality_table`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the bf16 source checkpoint (make smollm2)")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/vllm-arm-int4-quality"), help="work directory")
    parser.add_argument(
        "--calibration",
        default="builtin:calibration",
        help="gptq's calibration text (quantize's "
        "--calibration; make quality passes python -m benchmarks.fetch_wikipedia's articles)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--max-windows", type=int, help="passed to eval: score only the first N windows")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",")]
    if unknown := [n for n in names if n not in VARIANTS]:
        sys.exit(f"error: unknown variant(s) {unknown} (fix: choose from {', '.join(VARIANTS)})")
    eval_args = ["--max-windows", str(args.max_windows)] if args.max_windows else []
    t0 = time.perf_counter()
    rows = []
    for name in names:
        rows.append(row(name, args.model, args.out, eval_args, args.calibration))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(args.model, rows, eval_args, args.calibration, time.perf_counter() - t0)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
