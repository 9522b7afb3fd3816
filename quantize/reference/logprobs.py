"""The end-to-end check: vLLM's top-k next-token log-probs against the reference model's, teacher-forced."""

from __future__ import annotations

import math
from pathlib import Path

from .. import records
from ..vllm_engine import MAX_LOGPROBS as TOP_K  # vLLM's top-k log-probs per position
from .model import load_reference

DEFAULT_TOLERANCE = 0.1  # nats per token, mean KL(vLLM || reference); docs/smoke-check.md


def kl_topk_vs_full(q_top: dict[int, float], logp) -> float:
    """KL(Q || P) over Q's top-k tokens plus one bucket for all others; `logp` is P's full log-softmax."""
    kl, q_sum, p_sum = 0.0, 0.0, 0.0
    for token, lq in q_top.items():
        lp = float(logp[token])
        kl += math.exp(lq) * (lq - lp)
        q_sum += math.exp(lq)
        p_sum += math.exp(lp)
    q_rest, p_rest = max(1.0 - q_sum, 0.0), max(1.0 - p_sum, 1e-12)
    if q_rest > 1e-12:
        kl += q_rest * math.log(q_rest / p_rest)
    return max(kl, 0.0)


def compare(
    directory: Path, sequences: list[dict], tolerance: float = DEFAULT_TOLERANCE, model=None
) -> records.LogprobCheck:
    """Score `sequences` (from smoke.score: token ids and vLLM's top-k log-probs per position) with the
    reference of `directory` and report the mean KL(vLLM || reference) against `tolerance`."""
    import torch

    model = model or load_reference(directory)
    kls, top1, per_prompt, worst = [], 0, [], None
    for seq in sequences:
        ids, start = seq["token_ids"], seq["scored_from"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        seq_kls = []
        for offset, q_top in enumerate(seq["logprobs"]):
            pos = start + offset  # q_top is vLLM's distribution of token ids[pos], given ids[:pos]
            row = logp[pos - 1]
            q_top = {int(t): lq for t, lq in q_top.items()}
            kl = kl_topk_vs_full(q_top, row)
            seq_kls.append(kl)
            vllm_top, ref_top = max(q_top, key=q_top.get), int(row.argmax())
            top1 += vllm_top == ref_top
            if worst is None or kl > worst["kl"]:
                worst = {
                    "prompt": seq["prompt"],
                    "position": pos,
                    "kl": kl,
                    "vllm_top_token": vllm_top,
                    "reference_top_token": ref_top,
                }
        kls += seq_kls
        per_prompt.append({"prompt": seq["prompt"], "mean_kl": round(sum(seq_kls) / max(len(seq_kls), 1), 5)})
    mean = sum(kls) / max(len(kls), 1)
    passed = mean <= tolerance
    worst = worst and {**worst, "kl": round(worst["kl"], 5)}
    return {
        "compared": f"vLLM's next-token log-probs (top {TOP_K} + the rest) with the PyTorch float32 reference of "
        f"{directory}, teacher-forced over each prompt and vLLM's generated tokens",
        "statistic": "mean KL(vLLM || reference), nats per token",
        "value": round(mean, 5),
        "tolerance": tolerance,
        "passed": passed,
        "verdict": (
            f"vLLM computes what the reference computes: mean KL {mean:.4f} <= {tolerance}"
            if passed
            else f"vLLM disagrees with the reference: mean KL {mean:.4f} > {tolerance} nats per token; the "
            "checkpoint or vLLM's reading of it is wrong"
        ),
        "positions": len(kls),
        "top1_matches": top1,
        "worst_position": worst,
        "per_prompt": per_prompt,
    }
