"""vLLM loads our checkpoints on CPU, picks the W4A8 path, and generates what a PyTorch reference predicts.

Each test starts a real vLLM engine in a fresh process (`python -m quantize smoke`), about 15-30 s each.

Agreement tolerance: at every generated position vLLM's greedy token must be the reference's argmax or
within 0.25 logits of it (quantize.reference.DEFAULT_TOLERANCE). Measured on the tiny Llama: correct
checkpoints stay at or below 0.05; one layer's scales multiplied by 4 gives 1.27.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from quantize import quantizer
from quantize.recipe import Recipe
from quantize.reference import DEFAULT_TOLERANCE
from tests.conftest import error_line, run_cli

pytestmark = pytest.mark.vllm
X86 = platform.machine() == "x86_64"


def quantize(model: Path, out: Path, **recipe) -> Path:
    return quantizer.run(quantizer.Job(model_id=str(model), output_dir=out, recipe=Recipe(**recipe)))


def smoke(*args: str) -> tuple[int, dict, str]:
    result = run_cli("smoke", *args, "--eager")
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, report, result.stderr


@pytest.fixture(scope="module")
def llama_groupwise(tiny_llama, tmp_path_factory) -> Path:
    return quantize(tiny_llama, tmp_path_factory.mktemp("smoke") / "g32", method="minmax", scheme="groupwise")


@pytest.mark.parametrize("method,scheme", [("minmax", "groupwise"), ("mse", "channelwise")])
def test_dense_model_agrees_with_reference(tiny_llama, llama_groupwise, tmp_path, method, scheme):
    ckpt = (
        llama_groupwise if scheme == "groupwise" else quantize(tiny_llama, tmp_path / "c", method=method, scheme=scheme)
    )
    code, report, stderr = smoke(str(ckpt), "--reference")
    assert code == 0, stderr[-3000:]
    layers = report["layers"]
    # 2 layers x (qkv, o, gate_up, down): vLLM fuses q/k/v and gate/up into one Linear each.
    assert layers["w4a8_linear_layers"] == 8
    assert layers["linear_kernels"] == ["Dynamic4bitLinearKernel"]
    assert layers["other_quantized_linear_layers"] == {}
    assert report["generated_tokens"] == 4 * 16 and report["tokens_per_second"] > 0
    assert report["load_seconds"] > 0 and all(o["text"] for o in report["outputs"])
    agreement = report["agreement"]
    assert agreement["passed"] and agreement["tolerance"] == DEFAULT_TOLERANCE
    assert agreement["positions"] == 64 and agreement["argmax_matches"] >= 56
    if X86:
        assert "reference path" in report["note"]


def test_corrupted_scale_is_caught(llama_groupwise, tmp_path):
    """vLLM serving a checkpoint with one layer's scales x4 disagrees with the reference of the good one."""
    bad = Path(shutil.copytree(llama_groupwise, tmp_path / "bad"))
    tensors = load_file(bad / "model.safetensors")
    tensors["model.layers.0.mlp.down_proj.weight_scale"] *= 4
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    code, report, stderr = smoke(str(bad), "--reference", str(llama_groupwise))
    assert code == 1, stderr[-3000:]
    assert report["agreement"]["passed"] is False
    assert report["agreement"]["max_margin"] > 4 * DEFAULT_TOLERANCE


@pytest.mark.skipif(not X86, reason="on Arm the W4A8 MoE kernels exist; see make test-arm64")
def test_moe_experts_on_x86_fail_fast(tiny_deepseek, tmp_path):
    ckpt = quantize(tiny_deepseek, tmp_path / "moe", method="minmax", scheme="channelwise")
    result = run_cli("smoke", str(ckpt))
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: {ckpt} has W4A8 MoE experts, and vLLM's W4A8 MoE kernels exist only on Arm (aarch64); "
        "this host is x86_64 (fix: run smoke on an arm64 host (Graviton, Ampere), or re-quantize with "
        "--skip-experts to leave the experts unquantized so the checkpoint also loads on x86_64)"
    )
    assert "Initializing a V1 LLM engine" not in result.stderr  # failed before vLLM started


def test_moe_with_dense_experts_loads_and_generates(tiny_deepseek, tmp_path):
    ckpt = quantize(tiny_deepseek, tmp_path / "moe-dense", method="minmax", scheme="groupwise", skip_experts=True)
    code, report, stderr = smoke(str(ckpt), "--reference")
    assert code == 0, stderr[-3000:]
    assert report["agreement"]["passed"], report["agreement"]
    layers = report["layers"]
    # layer 0: qkv-less MLA projections + dense MLP; layer 1: MLA + shared experts (routed experts bf16)
    assert layers["w4a8_linear_layers"] == 12
    assert layers["moe_layers"] == 1 and layers["moe_methods"] == ["UnquantizedFusedMoEMethod"]
    assert "Using CPU_MLA backend" in stderr  # DeepSeek's MLA ran through vLLM's CPU MLA backend
    assert report["generated_tokens"] == 64
