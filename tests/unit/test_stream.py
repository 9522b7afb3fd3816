"""The streaming engine writes the same checkpoint as the model-loading path, resumes after an interruption,
and falls back (or refuses, when asked for explicitly) where it does not apply."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from quantize import manifest, quantizer, stream, validate
from quantize.errors import QuantizeError
from quantize.recipe import Recipe
from tests.helpers import quantize, read_tensors, run_cli, slow_if_deepseek_mse

COMBOS = [
    pytest.param(arch, method, scheme, skip, marks=slow_if_deepseek_mse(arch, method))
    for arch in ("tiny_llama", "tiny_deepseek")
    for method in ("minmax", "mse")
    for scheme in ("channelwise", "groupwise")
    for skip in ((False, True) if arch == "tiny_deepseek" else (False,))
]


@pytest.mark.parametrize("arch,method,scheme,skip", COMBOS)
def test_stream_equals_load(arch, method, scheme, skip, request, tmp_path):
    """Every tensor name, dtype, shape and value identical, and the same quantization_config."""
    model = request.getfixturevalue(arch)
    recipe = dict(method=method, scheme=scheme, skip_experts=skip)
    loaded = quantize(model, tmp_path / "load", engine="load", **recipe)
    streamed = quantize(model, tmp_path / "stream", engine="stream", shard_bytes=256 << 10, **recipe)  # several shards
    a, b = read_tensors(loaded), read_tensors(streamed)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name
    qc = [json.loads((d / "config.json").read_text())["quantization_config"] for d in (loaded, streamed)]
    assert qc[0] == qc[1]
    assert len(list(streamed.glob("*.safetensors"))) > 1 and (streamed / "model.safetensors.index.json").exists()
    assert validate.validate(streamed)["valid"]
    assert manifest.read(streamed)["arguments"]["engine"] == "stream"


def test_interrupted_run_resumes(tiny_deepseek, tmp_path, monkeypatch, caplog):
    out = tmp_path / "model-w4a8dyn"
    options = dict(engine="stream", shard_bytes=256 << 10, method="minmax", scheme="groupwise")
    calls = {"n": 0}
    import safetensors.torch as st  # stream.run imports save_file from here when it starts

    original = st.save_file

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the third shard was being written
        return original(*args, **kwargs)

    monkeypatch.setattr(st, "save_file", failing_save)
    with pytest.raises(KeyboardInterrupt):
        quantize(tiny_deepseek, out, **options)
    assert not out.exists()
    partial = tmp_path / ".model-w4a8dyn.partial-resume"
    assert sorted(p.name for p in partial.glob("*.safetensors")) == [
        "model-00001-of-00012.safetensors", "model-00002-of-00012.safetensors",
    ]  # fmt: skip
    assert not list(partial.glob(".*.tmp"))  # the interrupted third shard left no half-written file
    monkeypatch.setattr(st, "save_file", original)

    caplog.set_level(logging.INFO, logger="quantize")
    quantize(tiny_deepseek, out, **options)
    assert "Resuming: 2 of 12 output shards already written" in caplog.messages
    assert manifest.read(out)["arguments"]["resumed_shards"] == 2
    assert validate.validate(out)["valid"] and not partial.exists()
    clean = quantize(tiny_deepseek, tmp_path / "clean", **options)
    a, b = read_tensors(out), read_tensors(clean)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_fused_experts_fall_back_or_refuse(tiny_deepseek, tmp_path, caplog):
    fused = Path(shutil.copytree(tiny_deepseek, tmp_path / "fused"))
    t = load_file(fused / "model.safetensors")
    t["model.layers.1.mlp.experts.gate_up_proj"] = torch.zeros(8, 384, 256, dtype=torch.bfloat16)
    save_file(t, fused / "model.safetensors", metadata={"format": "pt"})
    assert stream.unsupported_reason(fused) == "fused 3-D expert tensors in the checkpoint"
    job = quantizer.Job(model_id=str(fused), recipe=Recipe(), output_dir=tmp_path / "out", engine="stream")
    with pytest.raises(QuantizeError) as info:
        quantizer.choose_engine(job, fused)
    assert info.value.format() == (
        f"error: the streaming engine cannot quantize {fused}: fused 3-D expert tensors in the checkpoint "
        "(fix: use --engine load (or auto))"
    )
    caplog.set_level(logging.INFO, logger="quantize")
    caplog.clear()
    assert quantizer.choose_engine(quantizer.Job(**{**job.__dict__, "engine": "auto"}), fused) == "load"
    assert caplog.messages == [
        "Streaming does not apply (fused 3-D expert tensors in the checkpoint); loading the model instead."
    ]


def test_cli_defaults_to_streaming(tiny_llama, tmp_path):
    result = run_cli(str(tiny_llama), "--scheme", "groupwise", "--method", "minmax", "--output-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "tiny-llama-w4a8dyn-minmax-groupwise-g32"
    assert manifest.read(out)["arguments"]["engine"] == "stream"
    assert "Loading model" not in result.stderr
