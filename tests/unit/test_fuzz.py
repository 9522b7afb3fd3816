"""Seeded corruptions of a quantized tiny checkpoint and of its source: every one ends in a one-line error with a
non-zero exit and nothing written, or in success with a checkpoint that validates. Never a traceback.

Corruptions (by seed): byte flips in a safetensors header or in its data, truncations, header dtype and shape lies,
deleted and renamed tensors, a wrong or dangling index, a damaged config.json. `validate` runs on every
corrupted checkpoint, `quantize` on every corrupted source (in this process, so an exception that is not the
one-line error fails the test with its traceback).
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import pytest

from tests.helpers import error_line, run_main

CHECKPOINT_CASES = 300
SOURCE_CASES = 100
SHARD = "model.safetensors"


def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _join(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _tensor_names(header: dict) -> list[str]:
    return sorted(k for k in header if k != "__metadata__")


def flip_header_byte(d: Path, rng: random.Random) -> None:
    raw = bytearray((d / SHARD).read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    i = rng.randrange(0, 8 + length)
    raw[i] ^= 1 << rng.randrange(8)
    (d / SHARD).write_bytes(bytes(raw))


def flip_data_byte(d: Path, rng: random.Random) -> None:
    raw = bytearray((d / SHARD).read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    i = rng.randrange(8 + length, len(raw))
    raw[i] ^= 1 << rng.randrange(8)
    (d / SHARD).write_bytes(bytes(raw))


def truncate(d: Path, rng: random.Random) -> None:
    raw = (d / SHARD).read_bytes()
    (d / SHARD).write_bytes(raw[: rng.randrange(0, len(raw))])


def lie_about_dtype(d: Path, rng: random.Random) -> None:
    header, data = _split(d / SHARD)
    name = rng.choice(_tensor_names(header))
    header[name]["dtype"] = rng.choice(["F16", "BF16", "F32", "I8", "I32", "F8_E4M3", "BOOL", "U8", "F64"])
    _join(d / SHARD, header, data)


def lie_about_shape(d: Path, rng: random.Random) -> None:
    header, data = _split(d / SHARD)
    name = rng.choice(_tensor_names(header))
    shape = header[name]["shape"]
    choice = rng.randrange(3)
    if choice == 0 and shape:
        shape[rng.randrange(len(shape))] += rng.choice([-1, 1])
    elif choice == 1:
        header[name]["shape"] = list(reversed(shape))
    else:
        header[name]["shape"] = [*shape, 1]
    _join(d / SHARD, header, data)


def delete_tensor(d: Path, rng: random.Random) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(d / SHARD)
    del tensors[rng.choice(sorted(tensors))]
    save_file(tensors, d / SHARD, metadata={"format": "pt"})


def rename_tensor(d: Path, rng: random.Random) -> None:
    header, data = _split(d / SHARD)
    name = rng.choice(_tensor_names(header))
    header[rng.choice([name + "_x", name.replace("layers.", "layers.9"), "model." + name])] = header.pop(name)
    _join(d / SHARD, header, data)


def bad_index(d: Path, rng: random.Random) -> None:
    header, _ = _split(d / SHARD)
    names = _tensor_names(header)
    choice = rng.randrange(3)
    if choice == 0:
        weight_map = {n: "model-00002-of-00002.safetensors" for n in names}
    elif choice == 1:
        weight_map = {n: SHARD for n in names if rng.random() < 0.5}
    else:
        (d / "model.safetensors.index.json").write_text("{not json")
        return
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def damage_config(d: Path, rng: random.Random) -> None:
    config = json.loads((d / "config.json").read_text())
    choice = rng.randrange(4)
    if choice == 0:
        (d / "config.json").write_text(json.dumps(config)[: rng.randrange(1, 40)])
    elif choice == 1:
        del config[rng.choice(sorted(config))]
        (d / "config.json").write_text(json.dumps(config))
    elif choice == 2:
        ints = sorted(k for k, v in config.items() if type(v) is int)
        config[rng.choice(ints)] = rng.choice([0, 1, 3, 7, 1000])
        (d / "config.json").write_text(json.dumps(config))
    else:
        (d / "config.json").write_text("[]")


def delete_file(d: Path, rng: random.Random) -> None:
    (d / rng.choice(sorted(p.name for p in d.iterdir() if p.is_file()))).unlink()


CORRUPTIONS = [flip_header_byte, flip_data_byte, truncate, lie_about_dtype, lie_about_shape, delete_tensor,
               rename_tensor, bad_index, damage_config, delete_file]  # fmt: skip


def corrupted_copy(good: Path, work: Path, seed: int) -> tuple[Path, str]:
    rng = random.Random(seed)
    corruption = rng.choice(CORRUPTIONS)
    copy = Path(shutil.copytree(good, work / f"case-{seed}"))
    corruption(copy, rng)
    return copy, corruption.__name__


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else None for p in root.rglob("*")}


def assert_clean_outcome(result, what: str) -> None:
    if result.returncode == 0:
        return
    line = error_line(result)
    assert line.startswith("error: "), f"{what}: exit {result.returncode}, last line {line!r}"
    assert "Traceback" not in result.stderr, f"{what}: {result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def good_checkpoint(quantized) -> Path:
    return quantized("tiny_llama", method="minmax", scheme="groupwise")  # corrupted_copy copies it


def test_corrupted_checkpoints_fail_in_one_line(good_checkpoint, tmp_path, capsys):
    outcomes = {}
    for seed in range(CHECKPOINT_CASES):
        copy, name = corrupted_copy(good_checkpoint, tmp_path, seed)
        before = tree(copy)
        result = run_main(capsys, "validate", copy)
        assert_clean_outcome(result, f"seed {seed} ({name})")
        assert tree(copy) == before, f"seed {seed} ({name}): validate changed the directory"
        if result.returncode == 0:
            assert json.loads(result.stdout)["valid"] is True
        outcomes[result.returncode] = outcomes.get(result.returncode, 0) + 1
        shutil.rmtree(copy)
    assert outcomes.get(0, 0) < CHECKPOINT_CASES // 4, outcomes  # the manifest's hashes catch most damage


def test_corrupted_sources_fail_in_one_line_or_quantize_validly(tiny_llama, tmp_path, capsys):
    outcomes = {}
    for seed in range(SOURCE_CASES):
        copy, name = corrupted_copy(tiny_llama, tmp_path, 10_000 + seed)
        out = tmp_path / f"out-{seed}"
        result = run_main(capsys, copy, "--scheme", "channelwise", "--method", "minmax", "--output-dir", out)
        assert_clean_outcome(result, f"seed {seed} ({name})")
        if result.returncode == 0:
            checked = run_main(capsys, "validate", out)
            assert checked.returncode == 0, f"seed {seed} ({name}): quantized, but {error_line(checked)}"
            shutil.rmtree(out)
        else:
            assert not out.exists() and not list(tmp_path.glob(f".out-{seed}*")), f"seed {seed} ({name}) left files"
        outcomes[result.returncode] = outcomes.get(result.returncode, 0) + 1
        shutil.rmtree(copy)
    assert outcomes.get(2, 0) > 0, outcomes
