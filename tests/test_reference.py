"""The end-to-end statistic of `smoke --reference` on distributions whose KL is known (no vLLM needed)."""

from __future__ import annotations

import math

import pytest
import torch

from quantize.reference import bucketed_kl


def test_identical_distributions_have_zero_kl():
    logp = torch.log_softmax(torch.tensor([2.0, 1.0, 0.5, -1.0], dtype=torch.float64), dim=-1)
    top = {0: float(logp[0]), 1: float(logp[1])}
    assert bucketed_kl(top, logp) == pytest.approx(0.0, abs=1e-12)


def test_kl_over_top_k_plus_rest_bucket():
    """Q = (0.5, 0.3 | rest 0.2), P = (0.25, 0.25 | rest 0.5): the bucketed KL, computed by hand."""
    p = torch.log(torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64))
    q_top = {0: math.log(0.5), 1: math.log(0.3)}
    want = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert bucketed_kl(q_top, p) == pytest.approx(want, rel=1e-9)
    # a lower bound of the full KL whatever Q does with the rest
    assert bucketed_kl(q_top, p) <= 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.2 / 0.25) + 1e-12
