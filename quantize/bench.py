"""`python -m quantize bench DIR [--baseline MODEL]`: vLLM offline generation speed, side by side.

For each model (the baseline first, when given: `reference` in the report) and each batch size, on fixed
synthetic prompts (token ids drawn with a fixed seed, so every model and run sees the same ones):
- prefill: generate 1 token; time to first token (TTFT) = that call's wall time, prefill tokens/s =
  batch x input length / TTFT;
- decode: generate `output_len` tokens with EOS ignored; decode tokens/s = batch x (output_len - 1) /
  (that call's time - TTFT).
Each figure is the median of `repeats` runs after one warm-up. The machine (CPU model, cores, affinity,
threads, vLLM's thread binding) is recorded with the results. On x86_64, vLLM runs W4A8 linear layers
through PyTorch's reference path, so the quantized model's speed there says nothing about Arm: the
report says so.

Outputs: JSON on stdout, `bench-report.md` and `bench.png` in the report directory.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from . import card, manifest, records, source, vllm_engine
from .contract import X86_NOTE
from .errors import QuantizeError
from .host import cpu_model, is_arm

DEFAULT_INPUT_LEN = 128
DEFAULT_OUTPUT_LEN = 32
DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_REPEATS = 3
REPORT_NAME = "bench-report.md"
CHART_NAME = "bench.png"


def machine_info() -> records.BenchMachine:
    import torch

    return {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "vllm_cpu_omp_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto (vLLM default)"),
    }


def synthetic_prompts(vocab_size: int, batch: int, input_len: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    low, high = min(1000, vocab_size // 4), vocab_size - 1  # skip the special tokens at the start of most vocabs
    return [[rng.randint(low, high) for _ in range(input_len)] for _ in range(batch)]


def _timed(llm, prompts, max_tokens: int) -> float:
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    t0 = time.perf_counter()
    llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
    return time.perf_counter() - t0


def measure(
    directory: Path, input_len: int, output_len: int, batch_sizes, repeats: int, eager: bool, dtype: str = "auto"
) -> dict:
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(directory).get_text_config().vocab_size
    llm, load_seconds = vllm_engine.load(
        directory, max_model_len=input_len + output_len, eager=eager, dtype=dtype, max_num_seqs=max(batch_sizes)
    )
    try:
        _timed(llm, synthetic_prompts(vocab, 1, input_len, seed=99), 2)  # warm-up
        rows = []
        for batch in batch_sizes:
            prompts = synthetic_prompts(vocab, batch, input_len)
            prefill = [_timed(llm, prompts, 1) for _ in range(repeats)]
            full = [_timed(llm, prompts, output_len) for _ in range(repeats)]
            ttft = statistics.median(prefill)
            decode_seconds = max(statistics.median(full) - ttft, 1e-9)
            rows.append(
                {
                    "batch_size": batch,
                    "ttft_s": round(ttft, 4),
                    "prefill_tokens_per_s": round(batch * input_len / ttft, 2),
                    "decode_tokens_per_s": round(batch * (output_len - 1) / decode_seconds, 2),
                }
            )
    finally:
        vllm_engine.close(llm)
    return {"model": str(directory), "load_seconds": round(load_seconds, 2), "results": rows}


def markdown(report: records.BenchReport) -> str:
    lines = [
        "# vLLM CPU throughput",
        "",
        f"{report['machine']['cpu_model']}, {report['machine']['cpus_allowed']} CPUs allowed "
        f"({report['machine']['cpu_count']} online), {report['machine']['torch_threads']} torch threads, "
        f"binding {report['machine']['vllm_cpu_omp_threads_bind']}; vLLM {report['vllm_version']} in "
        f"{report['dtype']['dtype']}, "
        f"{report['date']}. Input {report['input_len']} tokens, output {report['output_len']} tokens, "
        f"median of {report['repeats']} runs.",
        "",
        "| model | batch | TTFT (s) | prefill tok/s | decode tok/s |",
        "|---|---|---|---|---|",
    ]
    for model in report["models"]:
        for row in model["results"]:
            lines.append(
                f"| {model['label']} | {row['batch_size']} | {row['ttft_s']:.3f} | "
                f"{row['prefill_tokens_per_s']:.1f} | {row['decode_tokens_per_s']:.1f} |"
            )
    if "ratios" in report:
        lines += ["", "Quantized / reference, same run:", ""]
        for r in report["ratios"]:
            lines.append(
                f"- batch {r['batch_size']}: prefill x{r['prefill']:.2f}, decode x{r['decode']:.2f}, "
                f"TTFT x{r['ttft']:.2f}"
            )
    if "note" in report:
        lines += ["", f"**Note:** {report['note']}."]
    return "\n".join(lines) + "\n"


def chart(report: records.BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    batches = [r["batch_size"] for r in models[0]["results"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(models)
    panels = (("prefill_tokens_per_s", "Prefill"), ("decode_tokens_per_s", "Decode"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, model in enumerate(models):
            xs = [b + (i - (len(models) - 1) / 2) * width for b in range(len(batches))]
            ax.bar(xs, [r[key] for r in model["results"]], width, label=model["label"])
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_ylabel("tokens/s")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['machine']['cpu_model']} ({report['machine']['cpus_allowed']} CPUs)", fontsize=10)
    if "note" in report:
        fig.text(0.5, 0.01, report["note"], ha="center", fontsize=8, color="darkred", wrap=True)
    fig.tight_layout(rect=(0, 0.07 if "note" in report else 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    directory: str | Path,
    baseline: str | None = None,
    input_len: int = DEFAULT_INPUT_LEN,
    output_len: int = DEFAULT_OUTPUT_LEN,
    batch_sizes=DEFAULT_BATCH_SIZES,
    repeats: int = DEFAULT_REPEATS,
    report_dir: str | Path | None = None,
    eager: bool = False,
    dtype: str = "auto",
) -> records.BenchReport:
    from vllm import __version__ as vllm_version

    directory = Path(directory)
    vllm_dtype = vllm_engine.resolve_dtype(directory, dtype)  # both models run in it
    if input_len < 1 or output_len < 2 or repeats < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise QuantizeError(
            "bench needs --input-len >= 1, --output-len >= 2, --repeats >= 1 and positive batch sizes",
            "e.g. --input-len 128 --output-len 32 --batch-sizes 1,8",
        )
    report_dir = Path(report_dir) if report_dir else directory
    report_dir.mkdir(parents=True, exist_ok=True)
    targets = [("quantized", directory)]
    if baseline:
        targets.insert(0, ("reference", source.resolve(baseline).path))
    models = []
    for label, path in targets:
        result = measure(path, input_len, output_len, tuple(batch_sizes), repeats, eager, vllm_dtype["dtype"])
        models.append({"label": f"{label}: {Path(path).name}", **result})
    report = {
        "input_len": input_len,
        "output_len": output_len,
        "repeats": repeats,
        "models": models,
        "machine": machine_info(),
        "dtype": vllm_dtype,
        "vllm_version": vllm_version,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if baseline:
        ref, quant = models[0]["results"], models[1]["results"]
        report["ratios"] = [
            {
                "batch_size": r["batch_size"],
                "prefill": round(q["prefill_tokens_per_s"] / r["prefill_tokens_per_s"], 3),
                "decode": round(q["decode_tokens_per_s"] / r["decode_tokens_per_s"], 3),
                "ttft": round(q["ttft_s"] / r["ttft_s"], 3),
            }
            for r, q in zip(ref, quant, strict=True)
        ]
    if not is_arm():
        report["note"] = X86_NOTE
    (report_dir / REPORT_NAME).write_text(markdown(report))
    chart(report, report_dir / CHART_NAME)
    if report_dir == directory and (directory / manifest.MANIFEST).is_file():
        card.write(directory)  # now with this report
    report["report"] = str(report_dir / REPORT_NAME)
    report["chart"] = str(report_dir / CHART_NAME)
    return report
