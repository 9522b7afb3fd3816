"""The offload engine (`--engine offload`, auto's choice for calibrated methods): weights on disk beside the output,
llmcompressor's sequential pipeline onloading a decoder layer at a time. It must write exactly what the loaded
model writes, leave nothing behind, and be what `auto` picks only where calibration text runs."""

from __future__ import annotations

import ctypes
import json
import platform
from pathlib import Path

import pytest

from quantize import host, manifest, quantizer, validate
from quantize.recipe import Recipe
from tests.helpers import ROOT, quantize, read_tensors

RECIPES = ROOT / "recipes"


CASES = {
    "llama-gptq-g32": ("tiny_llama", {"method": "gptq", "scheme": "groupwise"}),
    "deepseek-imatrix-g32": ("tiny_deepseek", {"method": "imatrix", "scheme": "groupwise"}),
    "deepseek-awq-recipe": ("tiny_deepseek", {"recipe_file": RECIPES / "deepseek-v2-awq-mse-g32.yaml"}),
    "deepseek-awq-gptq-g32": ("tiny_deepseek", {"method": "awq-gptq", "scheme": "groupwise"}),
}


@pytest.mark.slow  # two calibrated runs each, 10-40 s
@pytest.mark.parametrize("case", CASES)
def test_offload_writes_what_the_loaded_model_writes(case, calibration_jsonl, tmp_path, request):
    fixture, options = CASES[case]
    model = request.getfixturevalue(fixture)
    common = {"calibration": str(calibration_jsonl), "calibration_seq_len": 64, **options}
    loaded = quantize(model, tmp_path / "load", engine="load", **common)
    offloaded = quantize(model, tmp_path / "offload", engine="offload", **common)
    first, second = read_tensors(loaded), read_tensors(offloaded)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k].dtype != second[k].dtype or not first[k].equal(second[k])] == []
    assert manifest.read(offloaded)["arguments"]["engine"] == "offload" and validate.validate(offloaded)["valid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["load", "offload"]  # no scratch directory left


def test_auto_offloads_calibrated_methods_only(tiny_llama, tmp_path):
    def chosen(engine: str, **recipe) -> str:
        job = quantizer.Job(model_id=str(tiny_llama), recipe=Recipe(**recipe), output_dir=tmp_path, engine=engine)
        return quantizer.choose_engine(job, tiny_llama)

    assert chosen("auto", method="gptq") == chosen("auto", method="imatrix") == "offload"
    assert chosen("auto", method="awq-gptq") == "offload"
    assert chosen("auto", method="mse") == "stream" and chosen("offload", method="mse") == "offload"
    assert chosen("load", method="gptq") == "load"


def test_scratch_directory_goes_however_the_run_ends(tmp_path):
    from quantize import output

    target = tmp_path / "out"
    with pytest.raises(RuntimeError), output.scratch_directory(target, "offload") as scratch:
        (scratch / "weights.safetensors").write_bytes(b"x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / ".out.partial-offload-999999999"  # a killed run's (no such process)
    stale.mkdir()
    output.remove_stale_partials(target)
    assert not stale.exists()


def _private_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("RssAnon:"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_os():
    """What glibc keeps after `free` (blocks below its mmap threshold, with a live one above them) is returned by
    host.release_freed_memory (after llmcompressor's linearize_moe on the 3-layer V2-Lite-shaped slice, RssAnon fell
    from 1.42 to 0.34 GB with it: 57fcdea)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(4096)]  # 256 MiB below the 128 KiB default mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    pinned = libc.malloc(64 * 1024)  # keeps the heap's top in use, so free() alone cannot shrink it
    for block in blocks:
        libc.free(block)
    before = _private_bytes()
    host.release_freed_memory()
    after = _private_bytes()
    libc.free(pinned)
    assert before - after > 128 * 2**20, (before, after)


def test_offload_releases_freed_memory_once_per_decoder_layer(tiny_deepseek, calibration_jsonl, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(host, "release_freed_memory", lambda: calls.append(1))
    quantize(tiny_deepseek, tmp_path / "out", engine="offload", method="gptq", scheme="groupwise",
             calibration=str(calibration_jsonl), calibration_seq_len=64)  # fmt: skip
    layers = json.loads((tiny_deepseek / "config.json").read_text())["num_hidden_layers"]
    assert len(calls) == 1 + layers  # after loading, then as each decoder layer first runs
