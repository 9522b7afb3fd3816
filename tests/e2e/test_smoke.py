"""vLLM loads our checkpoints on CPU, picks the W4A8 path, and computes what a PyTorch reference predicts.

Each test starts a real vLLM engine in a fresh process (`python -m quantize smoke`), about 15-30 s each.

The reference check has two statistics (quantize/reference/; figures in docs/smoke-check.md): each W4A8
Linear's output against the checkpoint's dequantized weights (tolerance 5 %; correct layers measure 0.2-0.3 %
on the tiny models and on SmolLM2-135M, the weakest planted fault 36 %), and the mean KL of vLLM's
next-token distribution against the float32 reference (tolerance 0.1 nats/token; correct: 0.0004 on the tiny
Llama, 0.033 on SmolLM2-135M). The planted faults come from tools/faults.py, as `make fault-matrix` uses them.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

import pytest

from quantize import records
from quantize.reference import DEFAULT_TOLERANCE, LAYER_TOLERANCE
from tests.helpers import error_line, quantize, run_cli
from tools import faults

pytestmark = pytest.mark.vllm
X86 = platform.machine() == "x86_64"


smoke = functools.partial(faults.smoke, timeout=600)  # `python -m quantize smoke ARGS --eager`: code, report, stderr


@pytest.fixture(scope="module")
def llama_groupwise(quantized) -> Path:
    return quantized("tiny_llama", method="minmax", scheme="groupwise")


@pytest.mark.parametrize("method,scheme", [("minmax", "groupwise"), ("mse", "channelwise")])
def test_dense_model_agrees_with_reference(tiny_llama, llama_groupwise, tmp_path, method, scheme):
    ckpt = (
        llama_groupwise if scheme == "groupwise" else quantize(tiny_llama, tmp_path / "c", method=method, scheme=scheme)
    )
    code, report, stderr = smoke(str(ckpt), "--reference")
    assert code == 0, stderr[-3000:]
    assert records.problems(report, records.SmokeReport) == []
    layers = report["layers"]
    # 2 layers x (qkv, o, gate_up, down): vLLM fuses q/k/v and gate/up into one Linear each.
    assert layers["w4a8_linear_layers"] == 8
    assert layers["linear_kernels"] == ["Dynamic4bitLinearKernel"]
    assert layers["other_quantized_linear_layers"] == {}
    assert report["generated_tokens"] == 4 * 16 and report["tokens_per_second"] > 0
    assert report["load_seconds"] > 0 and all(o["text"] for o in report["outputs"])
    agreement = report["agreement"]
    assert agreement["passed"], agreement["verdict"]
    layers, logprobs = agreement["layers"], agreement["logprobs"]
    assert layers["layers"] == 8 and layers["unmatched_layers"] == []
    # measured 0.0022 and 0.00037 here: a tenth of the tolerance leaves 2x-25x room for other CPUs
    assert layers["value"] < LAYER_TOLERANCE / 10 and logprobs["value"] < DEFAULT_TOLERANCE / 10
    assert logprobs["positions"] == sum(len(o["prompt_token_ids"]) - 1 + 16 for o in report["outputs"])
    if X86:
        assert "reference path" in report["note"]


FAULTS = faults.matrix("model.layers.0.mlp.down_proj", groupwise=True)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_planted_fault_is_caught(llama_groupwise, tmp_path, fault):
    """vLLM serving a damaged copy of a good checkpoint disagrees with the reference of the good one, and the
    report names the damaged layer."""
    bad = faults.plant(llama_groupwise, tmp_path / "bad", FAULTS[fault])
    code, report, stderr = smoke(str(bad), "--reference", str(llama_groupwise))
    assert code == 1, stderr[-3000:]
    agreement = report["agreement"]
    assert agreement["passed"] is False
    # the weakest fault measured 0.36 against a tolerance of 0.05 (docs/smoke-check.md)
    assert agreement["layers"]["value"] > 2 * LAYER_TOLERANCE
    assert agreement["layers"]["worst_layer"] == "model.layers.0.mlp.down_proj"
    assert agreement["verdict"].startswith("vLLM's model.layers.0.mlp.down_proj output differs")


def test_layers_only_skips_the_float32_model_and_still_catches_a_fault(llama_groupwise, tmp_path):
    bad = faults.plant(llama_groupwise, tmp_path / "bad", FAULTS["scales x1.5"])
    code, report, stderr = smoke(str(bad), "--reference", str(llama_groupwise), "--layers-only")
    assert code == 1, stderr[-3000:]
    assert report["agreement"]["logprobs"] is None and report["agreement"]["layers"]["value"] > 0.4
    result = run_cli("smoke", str(llama_groupwise), "--layers-only")
    assert result.returncode == 2
    assert error_line(result) == "error: --layers-only is a mode of the reference check (fix: add --reference)"


@pytest.mark.skipif(not X86, reason="on Arm the W4A8 MoE kernels exist; see make test-arm64")
def test_moe_experts_on_x86_fail_fast(quantized):
    ckpt = quantized("tiny_deepseek", method="minmax", scheme="channelwise")
    result = run_cli("smoke", str(ckpt))
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: {ckpt} has W4A8 MoE experts, and vLLM's W4A8 MoE kernels exist only on Arm (aarch64); "
        "this host is x86_64 (fix: run smoke on an arm64 host (Graviton, Ampere), or re-quantize with "
        "--skip-experts to leave the experts unquantized so the checkpoint also loads on x86_64)"
    )
    assert "Initializing a V1 LLM engine" not in result.stderr  # failed before vLLM started


def test_moe_with_dense_experts_loads_and_generates(quantized):
    ckpt = quantized("tiny_deepseek", method="minmax", scheme="groupwise", skip_experts=True)
    code, report, stderr = smoke(str(ckpt), "--reference")
    assert code == 0, stderr[-3000:]
    assert report["agreement"]["passed"], report["agreement"]["verdict"]
    assert report["agreement"]["layers"]["layers"] == 12  # every W4A8 Linear, MLA projections included
    layers = report["layers"]
    # layer 0: qkv-less MLA projections + dense MLP; layer 1: MLA + shared experts (routed experts bf16)
    assert layers["w4a8_linear_layers"] == 12
    assert layers["moe_layers"] == 1 and layers["moe_methods"] == ["UnquantizedFusedMoEMethod"]
    # DeepSeek's MLA ran through one of vLLM's CPU MLA backends (AMX_MLA on Xeons with AMX, CPU_MLA elsewhere)
    assert re.search(r"Using (CPU|AMX)_MLA backend", stderr)
    assert report["generated_tokens"] == 64
