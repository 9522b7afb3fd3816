"""The end-to-end statistic of `smoke --reference` on distributions whose KL is known (no vLLM needed)."""

from __future__ import annotations

import math

import pytest
import torch

from quantize.reference import kl_topk_vs_full, verdict


def test_identical_distributions_have_zero_kl():
    logp = torch.log_softmax(torch.tensor([2.0, 1.0, 0.5, -1.0], dtype=torch.float64), dim=-1)
    top = {0: float(logp[0]), 1: float(logp[1])}
    assert kl_topk_vs_full(top, logp) == pytest.approx(0.0, abs=1e-12)


def test_kl_over_top_k_plus_rest_bucket():
    """Q = (0.5, 0.3 | rest 0.2), P = (0.25, 0.25 | rest 0.5): the bucketed KL, computed by hand."""
    p = torch.log(torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64))
    q_top = {0: math.log(0.5), 1: math.log(0.3)}
    want = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert kl_topk_vs_full(q_top, p) == pytest.approx(want, rel=1e-9)
    # a lower bound of the full KL whatever Q does with the rest
    assert kl_topk_vs_full(q_top, p) <= 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.2 / 0.25) + 1e-12


def _layers(value, unmatched=()):
    return {
        "worst_layer": "model.layers.0.mlp.down_proj" if value is not None else None,
        "value": value,
        "tolerance": 0.05,
        "passed": value is not None and value <= 0.05 and not unmatched,
        "unmatched_layers": list(unmatched),
    }


def test_verdict_names_the_damaged_layer_or_what_is_missing():
    logprobs = {"value": 0.01, "tolerance": 0.1, "passed": True, "verdict": "ok"}
    assert verdict(_layers(0.003), logprobs)["passed"]
    bad = verdict(_layers(0.5), logprobs)
    assert not bad["passed"]
    assert (
        bad["verdict"]
        == "vLLM's model.layers.0.mlp.down_proj output differs from the checkpoint's by 50.0% (tolerance 5%)"
    )
    unmatched = verdict(_layers(0.003, ["model.layers.1.mlp.gate_up_proj"]), logprobs)
    assert not unmatched["passed"]
    assert unmatched["verdict"] == (
        "vLLM's W4A8 Linears have no counterpart in the reference's tensors (model.layers.1.mlp.gate_up_proj)"
    )
    skipped = verdict(_layers(0.003), None)
    assert skipped["passed"] and skipped["verdict"].endswith("end-to-end comparison skipped (--layers-only)")
