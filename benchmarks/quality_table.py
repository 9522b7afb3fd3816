"""The quality table: what each method costs on a real model, every figure from one run of this script.

For each variant (minmax/mse x channelwise/groupwise-32; gptq, imatrix, the AWQ recipe and awq-gptq at
groupwise-32) it runs the real CLI as a user would: `python -m quantize MODEL ...` (wall time and peak RSS from the
checkpoint's manifest), then `python -m quantize eval DIR --source MODEL` (perplexity through vLLM, top-1
agreement, KL), and scores the same checkpoint on the PyTorch reference path (`benchmarks.weight_error.perplexity`:
int4 weights dequantized, int8 per-token activations, float32). The bf16 rows are the source's own perplexities.

    python -m benchmarks.quality_table --model models/smollm2-135m --calibration models/wikipedia.jsonl \
        --markdown docs/quality-table.md [--max-windows 4] [--variants ...] [--reference-only]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

G32 = ["--scheme", "groupwise", "--groupsize", "32"]
# 128 windows of 512 tokens: 65 k tokens, 43x the widest SmolLM2 layer's inputs (see quantizer.py); loaded in
# float32, which x86 runs several times faster than bf16 (gptq: 926 s against 4,661 s, within a point: quality.md)
CALIBRATED = ["--calibration-samples", "128", "--dtype", "float32"]
VARIANTS = {
    "minmax channelwise": ["--method", "minmax", "--scheme", "channelwise"],
    "minmax g32": ["--method", "minmax", *G32],
    "mse channelwise": ["--method", "mse", "--scheme", "channelwise"],
    "mse g32": ["--method", "mse", *G32],
    "gptq g32": ["--method", "gptq", *G32, *CALIBRATED],
    "imatrix g32": ["--method", "imatrix", *G32, *CALIBRATED],
    "awq g32 (recipes/awq-mse-g32.yaml)": ["--recipe", "recipes/awq-mse-g32.yaml", *CALIBRATED],
    "awq-gptq g32": ["--method", "awq-gptq", *G32, *CALIBRATED],
    "awq-gptq g32 grid-20": ["--method", "awq-gptq", "--awq-grid", "20", *G32, *CALIBRATED],
    "awq-gptq g32 32-windows": ["--method", "awq-gptq", *G32, "--calibration-samples", "32", "--dtype", "float32"],
    "awq-gptq g32 16-windows": ["--method", "awq-gptq", *G32, "--calibration-samples", "16", "--dtype", "float32"],
    # bf16: on x86 without native bf16 several times slower than float32 (a 128-window run: hours), so not run here
    "awq-gptq g32 bf16": ["--method", "awq-gptq", *G32, "--calibration-samples", "128", "--dtype", "bfloat16"],
    # the package's own calibration text (about 1,600 tokens: 3 windows), what `make quantize` would use by default
    "awq-gptq g32 builtin": ["--method", "awq-gptq", *G32, "--calibration", "builtin:calibration", *CALIBRATED],
}


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m quantize ARGS`, exiting with its stderr's tail if it fails. The result's `peak_private_bytes` is
    the most anonymous (private) resident memory the process held, sampled at 20 Hz from /proc (Linux; 0 elsewhere):
    the memory a host must have. The manifest's peak RSS also counts file pages mapped from the checkpoints read
    (safetensors are mmapped), which the kernel drops under pressure instead of failing."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "quantize", *args], stdout=out, stderr=err, text=True)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _private_bytes(process.pid))
            time.sleep(0.05)
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, out.read(), err.read())
    if result.returncode != 0:
        sys.exit(f"error: python -m quantize {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    result.peak_private_bytes = peak
    return result


def _private_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return sum(
        int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith(("RssAnon:", "RssShmem:"))
    )


def reference_perplexities(directory: Path | None, model: Path, texts: list[str]) -> dict[str, float]:
    """Perplexity on the reference path of a checkpoint (None: of the source itself, float32), loaded once, on each
    of `texts` (corpus specs: builtin:eval, a .txt or .jsonl file)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.weight_error import perplexity
    from quantize import corpus, reference

    tokenizer = AutoTokenizer.from_pretrained(model)
    if directory is None:
        scored = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    else:
        scored = reference.load_reference(directory)
    return {text: perplexity(scored, corpus.token_windows(tokenizer, corpus.load_texts(text), 512)) for text in texts}


def row(name: str, model: Path, out: Path, eval_args: list[str] | None, calibration: str, texts: list[str]) -> dict:
    target = out / name.split(" (")[0].replace(" ", "-")
    options = VARIANTS[name]
    own = "--calibration" in options  # a variant with its own calibration text keeps it
    calibrated = ["--calibration", calibration] if "--calibration-samples" in options and not own else []
    cli(str(model), *options, *calibrated, "--output-dir", str(target), "--overwrite")
    info = json.loads((target / "quantization-manifest.json").read_text())
    metrics = {}
    if eval_args is not None:
        metrics = json.loads(cli("eval", str(target), "--source", str(model), *eval_args).stdout)["metrics"]
    return {
        "variant": name,
        "engine": info["arguments"]["engine"],
        "quantize_s": info["timings_s"]["total"],
        "peak_rss_gib": info["peak_rss_bytes"] / 2**30,
        "reference_path_perplexity": reference_perplexities(target, model, texts),
        **metrics,
    }


def markdown(model: Path, rows: list[dict], bf16: dict[str, float], eval_args: list[str] | None, calibration: str,
             seconds: float) -> str:  # fmt: skip
    """The table: vLLM's figures, then the reference path's perplexity and increase on each text scored."""
    vllm = eval_args is not None
    base = rows[0].get("perplexity_reference", 0.0)
    texts = list(bf16)
    per_text = "".join(f" reference path on `{t}` | increase |" for t in texts)
    lines = [
        f"| {model.name} | vLLM perplexity | increase | top-1 agreement | mean KL |{per_text} quantize time | "
        "peak RSS |",
        "|---|---|---|---|---|" + "---|---|" * len(texts) + "---|---|",
        f"| bf16 | {f'{base:.2f}' if vllm else ''} | | | |" + "".join(f" {bf16[t]:.2f} | |" for t in texts) + " | |",
    ]
    for r in rows:
        through_vllm = (
            f"{r['perplexity_quantized']:.2f} | {r['perplexity_increase_pct']:+.1f}% | "
            f"{100 * r['top1_agreement']:.1f}% | {r['mean_kl_divergence']:.3f}"
            if vllm
            else " | | | "
        )
        ref = r["reference_path_perplexity"]
        scores = "".join(f" {ref[t]:.2f} | {100 * (ref[t] / bf16[t] - 1):+.1f}% |" for t in texts)
        lines.append(
            f"| {r['variant']} | {through_vllm} |{scores} {r['quantize_s']:.0f} s ({r['engine']}) | "
            f"{r['peak_rss_gib']:.2f} GiB |"
        )
    scored = (
        f"{rows[0]['tokens_scored']} tokens of the built-in evaluation corpus scored through vLLM "
        f"(`python -m quantize eval {' '.join(eval_args)}`) and"
        if vllm
        else "Not scored through vLLM (--reference-only);"
    )
    lines += [
        "",
        f"{scored} every window of each text on the PyTorch reference path (float32, int4 weights dequantized, int8 "
        f"per-token activations). Calibrated rows (gptq, imatrix, awq) calibrated on `{calibration}`. "
        f"{platform.machine()}, {time.strftime('%Y-%m-%d')}, {seconds / 60:.0f} min for the table "
        f"(`python -m benchmarks.quality_table`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the bf16 source checkpoint (make smollm2)")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/vllm-arm-int4-quality"), help="work directory")
    parser.add_argument(
        "--calibration",
        default="builtin:calibration",
        help="calibration text of the calibrated rows (quantize's --calibration; make quality passes "
        "python -m benchmarks.fetch_wikipedia's articles)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument(
        "--eval-text",
        action="append",
        help="a text the reference path scores (repeatable; default builtin:eval; vLLM scores the built-in text "
        "only); make wikipedia also writes Wikipedia articles that no calibration window reaches",
    )
    parser.add_argument("--max-windows", type=int, help="passed to eval: score only the first N windows")
    parser.add_argument("--reference-only", action="store_true", help="skip vLLM (slow on x86_64): reference path")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",")]
    if unknown := [n for n in names if n not in VARIANTS]:
        sys.exit(f"error: unknown variant(s) {unknown} (fix: choose from {', '.join(VARIANTS)})")
    eval_args = None if args.reference_only else ["--max-windows", str(args.max_windows)] if args.max_windows else []
    t0 = time.perf_counter()
    texts = args.eval_text or ["builtin:eval"]
    bf16 = reference_perplexities(None, args.model, texts)
    rows = []
    for name in names:
        rows.append(row(name, args.model, args.out, eval_args, args.calibration, texts))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(args.model, rows, bf16, eval_args, args.calibration, time.perf_counter() - t0)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
