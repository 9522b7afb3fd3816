"""`validate` catches corrupted checkpoints and names the offending tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from quantize import quantizer
from quantize.recipe import Recipe
from tests.conftest import error_line, run_cli


@pytest.fixture(scope="module")
def good(tiny_deepseek, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validate") / "good"
    return quantizer.run(
        quantizer.Job(
            model_id=str(tiny_deepseek),
            output_dir=out,
            recipe=Recipe(method="minmax", scheme="groupwise", groupsize=32),
        )
    )


@pytest.fixture
def copy(good, tmp_path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "ckpt"))


def edit_tensors(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def validate_error(directory: Path) -> str:
    result = run_cli("validate", str(directory))
    assert result.returncode == 1, result.stdout + result.stderr
    return error_line(result)


FIX = " (fix: re-run quantize for this model (python -m quantize MODEL ...) into a fresh directory)"


def test_good_checkpoint_passes(good):
    result = run_cli("validate", str(good))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert "model.layers.1.mlp.gate" in report["ignored_modules"] and "lm_head" in report["ignored_modules"]


def test_value_outside_int4(copy):
    def edit(t):
        t["model.layers.0.self_attn.q_proj.weight"][0, 0] = 9

    edit_tensors(copy, edit)
    assert validate_error(copy) == (
        "error: validation failed: model.layers.0.self_attn.q_proj.weight has values in [-8, 9], "
        "outside the int4 range [-8, 7]" + FIX
    )


def test_scale_of_wrong_shape(copy):
    def edit(t):
        t["model.layers.1.mlp.experts.5.down_proj.weight_scale"] = t[
            "model.layers.1.mlp.experts.5.down_proj.weight_scale"
        ][:, :3].contiguous()

    edit_tensors(copy, edit)
    assert validate_error(copy) == (
        "error: validation failed: model.layers.1.mlp.experts.5.down_proj.weight_scale has shape [256, 3], "
        "expected [256, 6]" + FIX
    )


def test_router_gate_quantized(copy):
    def edit(t):
        t["model.layers.1.mlp.gate.weight"] = torch.zeros(8, 256, dtype=torch.int8)
        t["model.layers.1.mlp.gate.weight_scale"] = torch.ones(8, 8, dtype=torch.bfloat16)

    edit_tensors(copy, edit)
    assert validate_error(copy) == (
        "error: validation failed: model.layers.1.mlp.gate is ignored by the recipe (router gate or lm_head) "
        "but is stored quantized" + FIX
    )


def test_targeted_linear_left_unquantized(copy):
    def edit(t):
        t["model.layers.1.self_attn.o_proj.weight"] = torch.zeros(256, 128, dtype=torch.bfloat16)
        del t["model.layers.1.self_attn.o_proj.weight_scale"]

    edit_tensors(copy, edit)
    assert validate_error(copy) == (
        "error: validation failed: model.layers.1.self_attn.o_proj is a Linear the recipe targets, "
        "but model.layers.1.self_attn.o_proj.weight is stored unquantized (BF16)" + FIX
    )


def test_ignored_tensor_changed(copy):
    def edit(t):
        t["lm_head.weight"] = t["lm_head.weight"] * 2

    edit_tensors(copy, edit)
    assert validate_error(copy) == (
        "error: validation failed: lm_head.weight is ignored by the recipe but differs from the source "
        "model's tensor" + FIX
    )


def test_config_with_another_scheme(copy):
    config = json.loads((copy / "config.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = False
    (copy / "config.json").write_text(json.dumps(config))
    assert validate_error(copy) == (
        "error: validation failed: quantization_config weights.symmetric is False, "
        "the W4A8-dynamic recipe needs True" + FIX
    )


def test_file_changed_after_writing(copy):
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("fox", "cow"))
    assert validate_error(copy) == (
        "error: validation failed: tokenizer.json does not match the sha256 recorded in the manifest" + FIX
    )


def test_not_a_checkpoint(tiny_llama, tmp_path):
    result = run_cli("validate", str(tiny_llama))
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: {tiny_llama} is not a compressed-tensors checkpoint (config.json has no quantization_config) "
        "(fix: quantize it first: python -m quantize MODEL --scheme channelwise)"
    )
    result = run_cli("validate", str(tmp_path / "nope"))
    assert error_line(result) == (
        f"error: checkpoint directory {tmp_path / 'nope'} does not exist (fix: pass the directory quantize wrote)"
    )
