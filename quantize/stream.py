"""Streaming quantization: tensor by tensor from the source shards into output shards, with bounded memory.

The scheme is data-free (static weight observers, dynamic activations), so no forward pass is needed and each
weight can be quantized on its own. Every quantized tensor goes through the same llmcompressor and
compressed-tensors functions `oneshot` and `model_free_ptq` use (initialize_quantized_linear,
calibrate_weight, compress_module), with the observer oneshot actually runs for weights
(`memoryless_minmax` / `memoryless_mse`). So the output equals the load path's, tensor for tensor.

Memory: one source tensor (its shard is memory-mapped only while that tensor is read) plus the output shard
being assembled (`shard_bytes`), whatever the size of the source shards. Output shards are written to
a temporary name and renamed when complete;
`progress.json` records finished shards so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

from . import checkpoint, shapes, source_check
from .recipe import Recipe

logger = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 512 << 20  # output shard size: bounds the memory a streaming run holds
PROGRESS = "progress.json"
SAFETENSORS_DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I32": 4, "I64": 8, "BOOL": 1}


def unsupported_reason(source: Path, trust_remote_code: bool = False) -> str | None:
    """Why the streaming path cannot handle this checkpoint (None when it can)."""
    if not list(source.glob("*.safetensors")):
        return "no *.safetensors files"
    names = checkpoint.tensor_shapes(source)
    if any(len(shape) == 3 for shape, _ in names.values()):
        return "fused 3-D expert tensors in the checkpoint"
    modules = {n.removesuffix(".weight") for n in names if n.endswith(".weight")}
    missing = [m for m in shapes.linear_modules(source, modules, trust_remote_code) if m not in modules]
    if [m for m in missing if m != "lm_head"]:  # a tied lm_head has no tensor of its own
        return f"tensor names do not match the model's modules (e.g. no {missing[0]}.weight)"
    return None


def split_linears(source: Path, headers: dict, recipe: Recipe, trust_remote_code: bool = False):
    """(targeted, ignored): the checkpoint's Linear modules the recipe quantizes (a set), and the others (a list,
    in model order)."""
    modules = {n.removesuffix(".weight") for n in headers if n.endswith(".weight")}
    linear = [m for m in shapes.linear_modules(source, modules, trust_remote_code) if m in modules]
    targeted = {m for m in linear if not shapes.is_ignored(m, recipe.ignore)}
    return targeted, [m for m in linear if m not in targeted]


def estimate_output_bytes(source: Path, recipe: Recipe, dtype_bytes: int = 0, trust_remote_code: bool = False) -> int:
    """What the quantized checkpoint will take on disk, rounded up: a quantized weight keeps one int8 byte per
    value plus a scale per group, every other tensor (and file) is copied, or upcast to `dtype_bytes`. Tensors
    whose names do not match the model's modules count at full size, so the estimate errs high, not low."""
    headers = checkpoint.tensor_shapes(source)
    targeted, _ = split_linears(source, headers, recipe, trust_remote_code)
    total = sum(p.stat().st_size for p in source.iterdir() if p.is_file() and not p.name.endswith(".safetensors"))
    for name, (shape, dtype) in headers.items():
        width = max(SAFETENSORS_DTYPE_BYTES.get(dtype, 4), dtype_bytes)
        if name.endswith(".weight") and name.removesuffix(".weight") in targeted:
            groups = shape[-1] // recipe.group_size if recipe.group_size else 1
            total += math.prod(shape) + shape[0] * groups * width
        else:
            total += math.prod(shape) * width
    return total + total // 100 + (1 << 20)  # headers, manifest, filesystem blocks


def weight_scheme(recipe: Recipe):
    """The recipe's scheme with the weight observer oneshot runs for data-free weights."""
    scheme = recipe.scheme_object()
    weights = scheme.weights.model_copy(update={"observer": f"memoryless_{recipe.method}"})
    return scheme.model_copy(update={"weights": weights})


def quantize_weight(module_name: str, weight, scheme) -> dict:
    """One Linear weight -> its compressed tensors (`weight`, `weight_scale`), via llmcompressor."""
    import torch
    from compressed_tensors.compressors import compress_module
    from compressed_tensors.quantization import initialize_module_for_quantization
    from llmcompressor.entrypoints.model_free.lifecycle import calibrate_weight

    # llmcompressor's initialize_quantized_linear, minus nn.Linear's random init of a weight that is replaced
    # at once (that init was 2/3 of the time per tensor).
    out_features, in_features = weight.shape
    module = torch.nn.utils.skip_init(torch.nn.Linear, in_features, out_features, bias=False, dtype=weight.dtype)
    module.weight.data = weight
    initialize_module_for_quantization(module, scheme, force_zero_point=False)
    calibrate_weight(module)
    compress_module(module)
    return {f"{module_name}.{k}": v.contiguous() for k, v in module.state_dict().items()}


def plan_shards(sizes: dict[str, int], shard_bytes: int) -> list[list[str]]:
    """Split tensor names (in source order) into output shards of at most `shard_bytes` (estimated)."""
    shards: list[list[str]] = [[]]
    used = 0
    for name, size in sizes.items():
        if shards[-1] and used + size > shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def quantization_config(recipe: Recipe, ignored: list[str]):
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus

    scheme = recipe.scheme_object().model_copy(update={"format": "int-quantized"})
    return QuantizationConfig(
        config_groups={"group_0": scheme},
        ignore=ignored,
        quantization_status=QuantizationStatus.COMPRESSED,
        format="int-quantized",
    )


def run(
    source: Path,
    recipe: Recipe,
    out: Path,
    fingerprint: dict,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    trust_remote_code: bool = False,
) -> dict:
    """Quantize `source` into `out` (a partial directory). Returns counts for the manifest."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from tqdm import tqdm

    headers = checkpoint.tensor_shapes(source)
    targeted, ignored = split_linears(source, headers, recipe, trust_remote_code)

    source_bytes = {n: math.prod(s) * SAFETENSORS_DTYPE_BYTES.get(dt, 4) for n, (s, dt) in headers.items()}
    out_bytes = {  # a quantized weight becomes int8 (its scales are small)
        n: math.prod(s) if n.removesuffix(".weight") in targeted else source_bytes[n] for n, (s, _) in headers.items()
    }
    shards = plan_shards(out_bytes, shard_bytes)
    files = [
        "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        for i in range(len(shards))
    ]
    shard_of = checkpoint.Reader(source).index

    progress_path = out / PROGRESS
    progress = _progress(progress_path, fingerprint, files)
    done = progress["done"]
    resumed = [f for f in files if f in done and (out / f).is_file()]
    if resumed:
        logger.info("Resuming: %d of %d output shards already written", len(resumed), len(files))

    scheme = weight_scheme(recipe)
    weight_map: dict[str, str] = {}
    total = sum(source_bytes[n] for shard, f in zip(shards, files, strict=True) if f not in resumed for n in shard)
    with tqdm(total=total, unit="B", unit_scale=True, desc="Quantizing (stream)") as bar, torch.no_grad():
        for names, filename in zip(shards, files, strict=True):
            if filename in resumed:
                weight_map.update(done[filename])
                continue
            tensors = _write_shard(
                names, out / filename, shard_of, targeted, scheme, lambda n: bar.update(source_bytes[n])
            )
            done[filename] = dict.fromkeys(tensors, filename)
            weight_map.update(done[filename])
            progress_path.with_suffix(".tmp").write_text(json.dumps(progress))
            os.replace(progress_path.with_suffix(".tmp"), progress_path)
            del tensors

    _finish(source, out, files, weight_map)
    ModelCompressor(quantization_config=quantization_config(recipe, ignored)).update_config(str(out))
    progress_path.unlink()
    return {"output_shards": len(files), "resumed_shards": len(resumed), "quantized_modules": len(targeted)}


def _progress(path: Path, fingerprint: dict, files: list[str]) -> dict:
    """What an interrupted run of the same command finished, or a fresh record when the run differs."""
    try:
        progress = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        progress = {}
    if progress.get("fingerprint") != fingerprint or progress.get("files") != files:
        progress = {"fingerprint": fingerprint, "files": files, "done": {}}
    return progress


def _write_shard(names: list[str], path: Path, shard_of: dict, targeted: set, scheme, read) -> dict:
    """Read the tensors `names` one at a time, quantize the targeted weights, write them to `path` (a temporary
    name first, fsync'd, then renamed); returns the tensors written. `read(name)` is called after each."""
    from safetensors.torch import save_file

    tensors: dict = {}
    for name in names:
        with checkpoint.open_shard(shard_of[name]) as fh:  # mapped for this tensor only
            tensor = fh.get_tensor(name)
        source_check.check_finite(name, tensor)
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module in targeted:
            tensors.update(quantize_weight(module, tensor, scheme))
        else:
            tensors[name] = tensor
        read(name)
    tmp = path.parent / f".{path.name}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return tensors


def _finish(source: Path, out: Path, files: list[str], weight_map: dict) -> None:
    """The source's other files (config, tokenizer) beside the shards, and the index when there are several."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(".safetensors") and path.name != "model.safetensors.index.json":
            shutil.copyfile(path, out / path.name)
    if len(files) > 1:
        total_size = sum((out / f).stat().st_size for f in files)
        index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
