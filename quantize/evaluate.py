"""`python -m quantize eval QUANT_DIR --source MODEL`: what quantization cost, measured through vLLM.

Both models score the same token windows of a corpus with vLLM's prompt log-probs (the path that serves
the model), one engine after the other in this process. From the two sets of log-probs:
- perplexity of each model, and the quantized model's increase over the reference, in percent;
- top-1 agreement: the share of positions where both models rank the same next token first;
- mean KL divergence KL(reference || quantized) per position, over the reference's top-k tokens plus one
  bucket for all other tokens. vLLM returns top-k log-probs, not the full vocabulary, so this bucketed KL
  is a lower bound of the full one (merging outcomes never increases a KL divergence). When one of the
  reference's top-k tokens is missing from the quantized model's top-k, its probability there is taken as
  the k-th one's (an upper bound), which keeps the estimate on the low side too.

`--max-ppl-increase PCT` turns the report into a gate (exit 1 when exceeded). The report is printed as
JSON, written as Markdown into the checkpoint directory, and appended to its manifest.
"""

from __future__ import annotations

import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from . import card, corpus, manifest, records, source, vllm_engine
from .errors import QuantizeError

DEFAULT_CORPUS = "builtin:eval"
DEFAULT_SEQ_LEN = 512
REPORT_NAME = "eval-report.md"


def score(directory: Path, windows: list[list[int]], top_k: int, eager: bool, dtype: str = "auto") -> dict:
    """Prompt log-probs of every window: per scored position, the actual token's log-prob and the top-k."""
    from vllm import SamplingParams, TokensPrompt

    longest = max(len(w) for w in windows)
    llm, load_seconds = vllm_engine.load(
        directory, max_model_len=longest + 1, eager=eager, dtype=dtype, max_logprobs=top_k
    )
    try:
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k)
        t0 = time.perf_counter()
        outputs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in windows], params, use_tqdm=False)
        seconds = time.perf_counter() - t0
    finally:
        vllm_engine.close(llm)
    actual, top = [], []
    for window, out in zip(windows, outputs, strict=True):
        for token, logprobs in zip(window[1:], out.prompt_logprobs[1:], strict=True):
            actual.append(logprobs[token].logprob)
            top.append({t: lp.logprob for t, lp in logprobs.items() if lp.rank is not None and lp.rank <= top_k})
    return {"actual": actual, "top": top, "load_seconds": load_seconds, "score_seconds": seconds}


def perplexity(actual: list[float]) -> float:
    return math.exp(-sum(actual) / len(actual))


def kl_topk_vs_topk(p_top: dict[int, float], q_top: dict[int, float]) -> float:
    """KL(P || Q) over P's top-k tokens plus one bucket for the rest (see the module docstring)."""
    floor = min(q_top.values())
    p = {t: math.exp(lp) for t, lp in p_top.items()}
    q = {t: math.exp(q_top.get(t, floor)) for t in p_top}
    kl = sum(p[t] * (p_top[t] - math.log(q[t])) for t in p)
    p_rest, q_rest = 1.0 - sum(p.values()), 1.0 - sum(q.values())
    if p_rest > 1e-12:
        kl += p_rest * math.log(p_rest / max(q_rest, 1e-12))
    return kl


def compare(reference: dict, quantized: dict) -> records.EvalMetrics:
    def argmax(top: dict[int, float]) -> int:
        return max(top, key=top.get)

    n = len(reference["actual"])
    agree = sum(argmax(r) == argmax(q) for r, q in zip(reference["top"], quantized["top"], strict=True))
    kl = [kl_topk_vs_topk(r, q) for r, q in zip(reference["top"], quantized["top"], strict=True)]
    ppl_ref, ppl_quant = perplexity(reference["actual"]), perplexity(quantized["actual"])
    return {
        "tokens_scored": n,
        "perplexity_reference": round(ppl_ref, 4),
        "perplexity_quantized": round(ppl_quant, 4),
        "perplexity_increase_pct": round(100.0 * (ppl_quant / ppl_ref - 1.0), 3),
        "top1_agreement": round(agree / n, 4),
        "mean_kl_divergence": round(sum(kl) / n, 5),
    }


def markdown(report: records.EvalReport) -> str:
    m = report["metrics"]
    gate = report.get("gate")
    lines = [
        f"# Quantization quality: {Path(report['model']).name}",
        "",
        f"Reference `{report['reference']}`, corpus `{report['corpus']}`, {m['tokens_scored']} tokens scored "
        f"in windows of {report['seq_len']}, through vLLM {report['vllm_version']} in "
        f"{report['dtype']['dtype']} on {report['machine']}, {report['date']}.",
        "",
        "| | perplexity | increase | top-1 agreement | mean KL (top-{k}+rest) |".format(k=report["top_k"]),
        "|---|---|---|---|---|",
        f"| reference | {m['perplexity_reference']:.3f} | | | |",
        f"| quantized | {m['perplexity_quantized']:.3f} | {m['perplexity_increase_pct']:+.2f}% | "
        f"{100 * m['top1_agreement']:.2f}% | {m['mean_kl_divergence']:.4f} |",
        "",
        f"Wall time {report['wall_seconds']:.1f} s (reference scored in {report['reference_score_seconds']:.1f} s, "
        f"quantized in {report['quantized_score_seconds']:.1f} s).",
    ]
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED"
        lines += ["", f"Gate: perplexity increase at most {gate['max_ppl_increase_pct']}%: **{verdict}**."]
    return "\n".join(lines) + "\n"


def run(
    directory: str | Path,
    source_model: str,
    corpus_spec: str = DEFAULT_CORPUS,
    seq_len: int = DEFAULT_SEQ_LEN,
    top_k: int = vllm_engine.MAX_LOGPROBS,
    max_windows: int | None = None,
    max_ppl_increase: float | None = None,
    eager: bool = False,
    revision: str | None = None,
    dtype: str = "auto",
) -> records.EvalReport:
    from transformers import AutoTokenizer
    from vllm import __version__ as vllm_version

    directory = Path(directory)
    vllm_dtype = vllm_engine.resolve_dtype(directory, dtype)  # both models run in it
    t0 = time.perf_counter()
    ref = source.resolve(source_model, revision)
    texts = corpus.load_texts(corpus_spec)
    windows = corpus.token_windows(AutoTokenizer.from_pretrained(ref.path), texts, seq_len, max_windows)
    if not windows:
        raise QuantizeError(f"corpus {corpus_spec!r} has fewer than 2 tokens", "give a longer text")
    ref_scores = score(ref.path, windows, top_k, eager, vllm_dtype["dtype"])
    quant_scores = score(directory, windows, top_k, eager, vllm_dtype["dtype"])
    report = {
        "model": str(directory),
        "reference": source_model,
        "corpus": corpus_spec,
        "seq_len": seq_len,
        "top_k": top_k,
        "windows": len(windows),
        "metrics": compare(ref_scores, quant_scores),
        "reference_score_seconds": round(ref_scores["score_seconds"], 2),
        "quantized_score_seconds": round(quant_scores["score_seconds"], 2),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "machine": platform.machine(),
        "dtype": vllm_dtype,
        "vllm_version": vllm_version,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if max_ppl_increase is not None:
        increase = report["metrics"]["perplexity_increase_pct"]
        report["gate"] = {"max_ppl_increase_pct": max_ppl_increase, "passed": increase <= max_ppl_increase}
    (directory / REPORT_NAME).write_text(markdown(report))
    report["manifest_updated"] = manifest.append(directory, "evaluations", report)
    if report["manifest_updated"]:
        card.write(directory)  # now with this report
    return report
