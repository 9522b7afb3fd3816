"""`validate` catches corrupted checkpoints and names the offending tensor."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers import Cases, error_line, run_cli, run_main


@pytest.fixture(scope="module")
def good(quantized) -> Path:
    return quantized("tiny_deepseek", method="minmax", scheme="groupwise")  # each corruption damages a copy


FIX = " (fix: re-run quantize for this model (python -m quantize MODEL ...) into a fresh directory)"


def test_good_checkpoint_passes(good):
    result = run_cli("validate", good)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert "model.layers.1.mlp.gate" in report["ignored_modules"] and "lm_head" in report["ignored_modules"]


@contextlib.contextmanager
def tensors(directory: Path):
    """The tensors of `directory`'s model.safetensors, written back when the block ends."""
    path = directory / "model.safetensors"
    edited = load_file(path)
    yield edited
    save_file(edited, path, metadata={"format": "pt"})


# Each corruption damages a copy of the good checkpoint and returns what validate must say about it.
CORRUPTIONS = Cases()


@CORRUPTIONS.add
def value_outside_int4(ckpt):
    with tensors(ckpt) as t:
        t["model.layers.0.self_attn.q_proj.weight"][0, 0] = 9
    return "model.layers.0.self_attn.q_proj.weight has values in [-8, 9], outside the int4 range [-8, 7]"


@CORRUPTIONS.add
def scale_of_wrong_shape(ckpt):
    name = "model.layers.1.mlp.experts.5.down_proj.weight_scale"
    with tensors(ckpt) as t:
        t[name] = t[name][:, :3].contiguous()
    return f"{name} has shape [256, 3], expected [256, 6]"


@CORRUPTIONS.add
def router_gate_quantized(ckpt):
    with tensors(ckpt) as t:
        t["model.layers.1.mlp.gate.weight"] = torch.zeros(8, 256, dtype=torch.int8)
        t["model.layers.1.mlp.gate.weight_scale"] = torch.ones(8, 8, dtype=torch.bfloat16)
    return "model.layers.1.mlp.gate is ignored by the recipe (router gate or lm_head) but is stored quantized"


@CORRUPTIONS.add
def targeted_linear_left_unquantized(ckpt):
    with tensors(ckpt) as t:
        t["model.layers.1.self_attn.o_proj.weight"] = torch.zeros(256, 128, dtype=torch.bfloat16)
        del t["model.layers.1.self_attn.o_proj.weight_scale"]
    return (
        "model.layers.1.self_attn.o_proj is a Linear the recipe targets, "
        "but model.layers.1.self_attn.o_proj.weight is stored unquantized (BF16)"
    )


@CORRUPTIONS.add
def ignored_tensor_changed(ckpt):
    with tensors(ckpt) as t:
        t["lm_head.weight"] = t["lm_head.weight"] * 2
    return "lm_head.weight is ignored by the recipe but differs from the source model's tensor"


@CORRUPTIONS.add
def config_with_another_scheme(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    config["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = False
    (ckpt / "config.json").write_text(json.dumps(config))
    return "quantization_config weights.symmetric is False, the W4A8-dynamic recipe needs True"


@CORRUPTIONS.add
def file_changed_after_writing(ckpt):
    (ckpt / "tokenizer.json").write_text((ckpt / "tokenizer.json").read_text().replace("fox", "cow"))
    return "tokenizer.json does not match the sha256 recorded in the manifest"


@CORRUPTIONS.add
def manifest_not_json(ckpt):
    (ckpt / "quantization-manifest.json").write_text('{"schema": "vllm-arm-int4/manifest/v1",')
    return (
        "quantization-manifest.json is not valid JSON "
        "(Expecting property name enclosed in double quotes at line 1, column 40)"
    )


@CORRUPTIONS.add
def manifest_without_arguments(ckpt):
    path = ckpt / "quantization-manifest.json"
    info = json.loads(path.read_text())
    del info["arguments"]["ignore"], info["files"]
    path.write_text(json.dumps(info))
    return "quantization-manifest.json is damaged: files is missing (and 1 more)"


@CORRUPTIONS.add
def manifest_with_a_wrong_type(ckpt):
    path = ckpt / "quantization-manifest.json"
    info = json.loads(path.read_text())
    info["files"]["config.json"]["sha256"] = 1
    path.write_text(json.dumps(info))
    return "quantization-manifest.json is damaged: files.config.json.sha256 should be str, not int 1"


@CORRUPTIONS.add
def tensor_deleted(ckpt):  # the one issue 24 found: a KeyError traceback
    with tensors(ckpt) as t:
        del t["model.layers.1.mlp.shared_experts.up_proj.weight"]
    return "the checkpoint has no tensor model.layers.1.mlp.shared_experts.up_proj.weight, which config.json implies"


@CORRUPTIONS.add
def tensor_and_its_scale_deleted(ckpt):
    with tensors(ckpt) as t:
        del t["model.layers.0.mlp.up_proj.weight"], t["model.layers.0.mlp.up_proj.weight_scale"]
    return "the checkpoint has no tensor model.layers.0.mlp.up_proj.weight, which config.json implies"


@CORRUPTIONS.add
def tensor_renamed(ckpt):
    with tensors(ckpt) as t:
        t["model.layers.1.self_attn.o_proj.weight_renamed"] = t.pop("model.layers.1.self_attn.o_proj.weight")
    return "the checkpoint has no tensor model.layers.1.self_attn.o_proj.weight, which config.json implies"


@CORRUPTIONS.add
def scale_of_wrong_dtype(ckpt):
    name = "model.layers.0.self_attn.o_proj.weight_scale"
    with tensors(ckpt) as t:
        t[name] = torch.ones_like(t[name], dtype=torch.int32)
    return f"{name} is torch.int32, expected a float dtype"


@CORRUPTIONS.add
def weight_of_wrong_shape(ckpt):
    name = "model.layers.0.self_attn.q_proj.weight"
    with tensors(ckpt) as t:
        t[name] = t[name][:100].contiguous()
    return (
        f"checkpoint tensor {name} is [100, 256], but config.json implies [192, 256] "
        "(config.json keys equal to 192: moe_intermediate_size)"
    )


@CORRUPTIONS.add
def config_that_disagrees_with_the_tensors(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    return (
        "checkpoint tensor model.layers.1.input_layernorm.weight is in a layer config.json does not have "
        "(num_hidden_layers is 1; the tensors hold 2 layers)"
    )


@CORRUPTIONS.parametrize("corrupt")
def test_corruption_is_named(corrupt, good, tmp_path, capsys):
    ckpt = Path(shutil.copytree(good, tmp_path / "ckpt"))
    message = corrupt(ckpt)
    result = run_main(capsys, "validate", ckpt)
    assert result.returncode == 1, result.stdout + result.stderr
    assert error_line(result) == f"error: validation failed: {message}{FIX}"


def test_not_a_checkpoint(tiny_llama, tmp_path):
    result = run_cli("validate", tiny_llama)
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: {tiny_llama} is not a compressed-tensors checkpoint (config.json has no quantization_config) "
        "(fix: quantize it first: python -m quantize MODEL --scheme channelwise)"
    )
    result = run_cli("validate", tmp_path / "nope")
    assert error_line(result) == (
        f"error: checkpoint directory {tmp_path / 'nope'} does not exist (fix: pass the directory quantize wrote)"
    )


def test_an_evaluation_from_an_older_version_still_validates(good, tmp_path, capsys):
    """eval's reports are kept as written; one without the keys later versions add does not damage the manifest."""
    ckpt = Path(shutil.copytree(good, tmp_path / "ckpt"))
    path = ckpt / "quantization-manifest.json"
    info = json.loads(path.read_text())
    info["evaluations"] = [{"model": str(ckpt), "metrics": {"perplexity_increase_pct": 1.0}}]  # no dtype, ...
    path.write_text(json.dumps(info))
    result = run_main(capsys, "validate", ckpt)
    assert result.returncode == 0, result.stderr
