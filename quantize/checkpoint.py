"""Read a compressed-tensors checkpoint without loading a model: config, tensor names and shapes, tensors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import QuantizeError

EXPERT_RE = re.compile(r"\.experts\.\d+\.")


def read_config(directory: Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise QuantizeError(f"checkpoint directory {directory} does not exist", "pass the directory quantize wrote")
    path = directory / "config.json"
    if not path.is_file():
        raise QuantizeError(
            f"{directory} is not a model directory (no config.json)", "pass the directory quantize wrote"
        )
    return json.loads(path.read_text())


def quantization_config(directory: Path) -> dict:
    config = read_config(directory)
    qc = config.get("quantization_config")
    if not qc or qc.get("quant_method") != "compressed-tensors":
        raise QuantizeError(
            f"{directory} is not a compressed-tensors checkpoint (config.json has no quantization_config)",
            "quantize it first: python -m quantize MODEL --scheme channelwise",
        )
    return qc


def shard_files(directory: Path) -> list[Path]:
    shards = sorted(Path(directory).glob("*.safetensors"))
    if not shards:
        raise QuantizeError(f"{directory} has no *.safetensors files", "pass the directory quantize wrote")
    return shards


def tensor_shapes(directory: Path) -> dict[str, tuple[list[int], str]]:
    """name -> (shape, safetensors dtype string), from the shard headers only."""
    from safetensors import safe_open

    shapes = {}
    for shard in shard_files(directory):
        with safe_open(shard, "pt") as fh:
            for name in fh.keys():
                sl = fh.get_slice(name)
                shapes[name] = (list(sl.get_shape()), sl.get_dtype())
    return shapes


def iter_tensors(directory: Path) -> Iterator[tuple[str, object]]:
    """(name, torch tensor), one at a time."""
    from safetensors import safe_open

    for shard in shard_files(directory):
        with safe_open(shard, "pt") as fh:
            for name in fh.keys():
                yield name, fh.get_tensor(name)


def quantized_modules(shapes: dict) -> list[str]:
    """Module names that carry an int weight with a `weight_scale` beside it."""
    return sorted(n.removesuffix(".weight_scale") for n in shapes if n.endswith(".weight_scale"))


def has_quantized_experts(directory: Path) -> bool:
    return any(EXPERT_RE.search(name) for name in quantized_modules(tensor_shapes(directory)))


class Reader:
    """Random access to a checkpoint's tensors by name; the name -> shard index is read once."""

    def __init__(self, directory: Path) -> None:
        from safetensors import safe_open

        self.index: dict[str, Path] = {}
        for shard in shard_files(directory):
            with safe_open(shard, "pt") as fh:
                self.index.update(dict.fromkeys(fh.keys(), shard))

    def get(self, name: str):
        from safetensors import safe_open

        with safe_open(self.index[name], "pt") as fh:
            return fh.get_tensor(name)
