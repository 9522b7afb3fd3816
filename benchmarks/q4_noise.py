"""Is SmolLM2's Q4_1 origin why calibrated methods gain little on it? Take it off the grid and measure again.

SmolLM2-135M reaches us as a llama.cpp Q4_1 GGUF dequantized to bf16 (`make smollm2`): in every block of 32
inputs its weights take at most 16 values, min + k * step, step = (max - min) / 15. docs/quality.md blames that
grid for GPTQ's small gain over mse. The test: add uniform noise in [-step/2, +step/2] to each block's weights
(seeded; the model stays a real model and its own bf16 perplexity is measured), so no weight sits on the grid
any more, then quantize both models with each method and compare the methods' gap on the two. If the grid is
what holds GPTQ back, the gap widens on the noised model.

    python -m benchmarks.q4_noise SOURCE --calibration models/wikipedia.jsonl --work out/q4-noise \
        [--methods mse,gptq,imatrix,awq-gptq] [--markdown docs/q4-noise.md]

Every checkpoint is written by the real CLI (`python -m quantize`), every perplexity is the PyTorch reference
path of `python -m benchmarks.weight_error perplexity` (int4 weights dequantized, int8 per-token activations).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.quality_table import cli
from benchmarks.weight_error import TEXTS, perplexity
from quantize import corpus, reference
from quantize.recipe import CALIBRATED_METHODS

BLOCK = 32  # Q4_1's block, along the input dimension (the same blocks as --groupsize 32)
LEVELS = 15  # steps between a Q4_1 block's min and max
ON_GRID = 0.1  # a weight is "on the grid" within a tenth of its block's step (bf16 rounding is ~3 % of a step)
SEED = 0
METHOD_ARGS = {
    "minmax": ["--method", "minmax"],
    "mse": ["--method", "mse"],
    # float32 load: the gptq rows of docs/quality.md show bf16 and float32 loads within a point of each other
    "gptq": ["--method", "gptq", "--dtype", "float32"],
    "imatrix": ["--method", "imatrix", "--dtype", "float32"],
    "awq-gptq": ["--method", "awq-gptq", "--dtype", "float32"],
}


def blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[out, in] -> (blocks [out, in/32, 32] in float32, block min, block step)."""
    w = weight.float().reshape(weight.shape[0], -1, BLOCK)
    lo = w.amin(-1, keepdim=True)
    step = (w.amax(-1, keepdim=True) - lo) / LEVELS
    return w, lo, step


def on_grid_fraction(weight: torch.Tensor) -> float:
    w, lo, step = blocks(weight)
    k = (w - lo) / step.clamp(min=1e-12)
    return ((k - k.round()).abs() < ON_GRID).float().mean().item()


def grid_weights(model) -> dict[str, torch.nn.Linear]:
    """The Linears `quantize` quantizes (all but lm_head), whose inputs split into Q4_1 blocks."""
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n != "lm_head" and m.in_features % BLOCK == 0
    }


def add_noise(model, seed: int = SEED) -> dict[str, tuple[float, float]]:
    """Uniform noise within half of each block's step, in place; name -> (on-grid fraction before, after)."""
    generator = torch.Generator().manual_seed(seed)  # CPU Mersenne Twister: the same noise on every host
    fractions = {}
    for name, module in grid_weights(model).items():
        before = on_grid_fraction(module.weight)
        w, _, step = blocks(module.weight)
        noise = (torch.rand(w.shape, generator=generator) - 0.5) * step
        module.weight.data.copy_((w + noise).reshape(module.weight.shape).to(module.weight.dtype))
        fractions[name] = (before, on_grid_fraction(module.weight))
    return fractions


def quantize(source: Path, method: str, target: Path, calibration: str, samples: int) -> dict:
    args = [str(source), *METHOD_ARGS[method], "--scheme", "groupwise", "--groupsize", str(BLOCK)]
    if method in CALIBRATED_METHODS:
        args += ["--calibration", calibration, "--calibration-samples", str(samples)]
    cli(*args, "--output-dir", str(target), "--overwrite")
    manifest = json.loads((target / "quantization-manifest.json").read_text())
    return {"seconds": manifest["timings_s"]["total"], "peak_rss_gib": manifest["peak_rss_bytes"] / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the model (SmolLM2-135M from make smollm2)")
    parser.add_argument("--work", type=Path, default=Path("out/q4-noise"), help="noised model and checkpoints")
    parser.add_argument("--methods", default="mse,gptq,imatrix")
    parser.add_argument("--calibration", default="builtin:calibration")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHOD_ARGS))
    if unknown:
        sys.exit(f"error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_ARGS)}")

    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(args.source)
    windows = corpus.token_windows(tokenizer, corpus.load_texts(TEXTS["eval"]), 512)
    noised = args.work / "source-noised"
    model = AutoModelForCausalLM.from_pretrained(args.source).eval()  # the checkpoint's own bf16
    fractions = add_noise(model)
    if noised.exists():
        shutil.rmtree(noised)
    model.save_pretrained(noised)
    tokenizer.save_pretrained(noised)
    before = sum(b for b, _ in fractions.values()) / len(fractions)
    after = sum(a for _, a in fractions.values()) / len(fractions)
    print(f"weights on a Q4_1 grid (mean over {len(fractions)} Linears): {before:.1%} before, {after:.1%} after")

    rows = []
    for label, source in (("original", args.source), ("noised", noised)):
        float_model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        base = perplexity(float_model, windows)
        del float_model
        print(f"{label}: float32 perplexity {base:.2f}", flush=True)
        for method in methods:
            target = args.work / f"{label}-{method}-g{BLOCK}"
            cost = quantize(source, method, target, args.calibration, args.calibration_samples)
            ppl = perplexity(reference.load_reference(target), windows)
            rows.append({"model": label, "base": base, "method": method, "ppl": ppl, **cost})
            print(f"{label} {method}: {ppl:.2f} ({100 * (ppl / base - 1):+.1f}%), {cost['seconds']:.0f} s", flush=True)

    table = render(rows, methods, args, before, after, len(windows), time.time() - started)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


def render(rows, methods, args, before, after, n_windows, seconds) -> str:
    increase = {(r["model"], r["method"]): 100 * (r["ppl"] / r["base"] - 1) for r in rows}
    lines = [
        "| model | bf16 perplexity | " + " | ".join(f"{m} g32" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for label in ("original", "noised"):
        base = next(r["base"] for r in rows if r["model"] == label)
        cells = [f"{r['ppl']:.2f} ({increase[label, r['method']]:+.1f}%)" for r in rows if r["model"] == label]
        lines.append(f"| {label} | {base:.2f} | " + " | ".join(cells) + " |")
    first = methods[0]
    gaps = [
        f"{m} vs {first}: {increase['original', first] - increase['original', m]:+.1f} points on the original, "
        f"{increase['noised', first] - increase['noised', m]:+.1f} on the noised model"
        for m in methods[1:]
    ]
    costs = ", ".join(f"{r['model']} {r['method']} {r['seconds']:.0f} s / {r['peak_rss_gib']:.2f} GiB" for r in rows)
    return "\n".join(
        [
            *lines,
            "",
            f"Weights of the quantized Linears on a Q4_1 grid: {before:.1%} before the noise, {after:.1%} after. "
            f"Perplexity: reference path, built-in evaluation text, {n_windows} windows of 512 tokens; "
            f"increase over the model's own float32 perplexity. Gap (points of increase removed relative to "
            f"{first}): " + "; ".join(gaps) + ".",
            "",
            f"Calibration: {args.calibration}, at most {args.calibration_samples} windows of 512 tokens. "
            f"Quantize time / peak RSS: {costs}. "
            f"Machine: {platform.machine()}, {torch.get_num_threads()} threads; whole run {seconds / 60:.0f} min. "
            f"Command: `python -m benchmarks.q4_noise {args.source} --calibration {args.calibration} "
            f"--calibration-samples {args.calibration_samples} --methods {args.methods}`.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
