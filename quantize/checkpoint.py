"""Read a compressed-tensors checkpoint without loading a model: config, tensor names and shapes, tensors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import QuantizeError

EXPERT_RE = re.compile(r"\.experts\.\d+\.")
INDEX = "model.safetensors.index.json"
LFS_POINTER = b"version https://git-lfs"  # what a clone without git-lfs holds instead of the weights
RECOPY_FIX = "download or copy the model again (an interrupted download or copy leaves files incomplete)"


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise QuantizeError(f"{path} is not valid JSON ({exc})", RECOPY_FIX) from exc


def read_config(directory: Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise QuantizeError(f"checkpoint directory {directory} does not exist", "pass the directory quantize wrote")
    path = directory / "config.json"
    if not path.is_file():
        raise QuantizeError(
            f"{directory} is not a model directory (no config.json)", "pass the directory quantize wrote"
        )
    config = read_json(path)
    if not isinstance(config, dict):
        raise QuantizeError(f"{path} is not a JSON object", RECOPY_FIX)
    return config


def quantization_config(directory: Path) -> dict:
    config = read_config(directory)
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or qc.get("quant_method") != "compressed-tensors":
        raise QuantizeError(
            f"{directory} is not a compressed-tensors checkpoint (config.json has no quantization_config)",
            "quantize it first: python -m quantize MODEL --scheme channelwise",
        )
    return qc


def shard_files(directory: Path) -> list[Path]:
    """The *.safetensors files, checked against the index (if any) for shards it names that are missing."""
    shards = sorted(Path(directory).glob("*.safetensors"))
    if not shards:
        raise QuantizeError(f"{directory} has no *.safetensors files", "pass the directory quantize wrote")
    index = Path(directory) / INDEX
    if index.is_file():
        missing = sorted(set(read_json(index).get("weight_map", {}).values()) - {s.name for s in shards})
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise QuantizeError(f"{index} names {missing[0]}{more}, which is missing", RECOPY_FIX)
    return shards


def open_shard(shard: Path):
    """`safe_open(shard)`, failing with one line for a file that is not safetensors (truncated, a Git LFS
    pointer). The header check covers the whole file: safetensors refuses a file shorter than its header says."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(shard, "pt")
    except SafetensorError as exc:
        with open(shard, "rb") as fh:
            if fh.read(len(LFS_POINTER)) == LFS_POINTER:
                raise QuantizeError(
                    f"{shard} is a Git LFS pointer, not the weights", f"run 'git lfs pull' in {shard.parent}"
                ) from exc
        reason = str(exc).removeprefix("Error while deserializing header: ")
        raise QuantizeError(f"{shard} is not a readable safetensors file ({reason})", RECOPY_FIX) from exc


def tensor_shapes(directory: Path) -> dict[str, tuple[list[int], str]]:
    """name -> (shape, safetensors dtype string), from the shard headers only."""
    shapes = {}
    for shard in shard_files(directory):
        with open_shard(shard) as fh:
            for name in fh.keys():
                sl = fh.get_slice(name)
                shapes[name] = (list(sl.get_shape()), sl.get_dtype())
    return shapes


def quantized_modules(shapes: dict) -> list[str]:
    """Module names that carry an int weight with a `weight_scale` beside it."""
    return sorted(n.removesuffix(".weight_scale") for n in shapes if n.endswith(".weight_scale"))


def has_quantized_experts(directory: Path) -> bool:
    return any(EXPERT_RE.search(name) for name in quantized_modules(tensor_shapes(directory)))


class Reader:
    """Random access to a checkpoint's tensors by name; the name -> shard index is read once."""

    def __init__(self, directory: Path) -> None:
        self.index: dict[str, Path] = {}
        for shard in shard_files(directory):
            with open_shard(shard) as fh:
                self.index.update(dict.fromkeys(fh.keys(), shard))

    def get(self, name: str):
        with open_shard(self.index[name]) as fh:
            return fh.get_tensor(name)
