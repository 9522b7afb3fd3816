"""`python -m quantize validate DIR`: check a checkpoint against the W4A8-dynamic recipe it claims.

Checks, in order, stopping at the first failure with the offending tensor named:
1. config.json's `quantization_config` is the seed's scheme (int4 symmetric static channel/group weights,
   int8 asymmetric dynamic per-token input activations, targets Linear, format int-quantized), in a form vLLM's
   CPU build serves: no group/dynamic activation ordering, no online transforms (`scheme_problem`);
2. every tensor config.json implies is there with its shape (int8 weights keep the source's), and no layer beyond
   the config's count (`source_check.check_shapes`); every quantized module stores its weight as int8 with values
   in [-8, 7], a finite positive float `weight_scale` of shape [out, 1] (channel) or [out, in / group] (group), no
   zero point, no input scale;
3. every Linear the recipe targets is quantized, and nothing it ignores is (router gates, lm_head);
4. ignored tensors are bit-identical to the source model's, when the source is available locally;
5. every file matches the sha256 recorded in `quantization-manifest.json` (whose form, records.Manifest, is checked
   first: checks 3 and 4 read it).
"""

from __future__ import annotations

from pathlib import Path

from . import checkpoint, manifest, records, shapes, source_check
from .contract import config_problem
from .errors import QuantizeError
from .hashing import sha256_file

FIX = manifest.REQUANTIZE


def fail(message: str) -> QuantizeError:
    return QuantizeError(f"validation failed: {message}", FIX, exit_code=1)


def check_config(qc: dict) -> dict:
    """The weights' arguments of a checkpoint's one config group, if it is the scheme vLLM serves on CPU."""
    if problem := config_problem(qc):
        raise fail(problem)
    return next(iter(qc["config_groups"].values()))["weights"]


def check_tensor_pair(module: str, weight, scale, weights_args: dict) -> None:
    import torch

    if weight.dtype != torch.int8:
        raise fail(f"{module}.weight is {weight.dtype}, expected torch.int8 (int4 values stored one per byte)")
    if weight.ndim != 2:
        raise fail(f"{module}.weight has shape {list(weight.shape)}, expected 2-D")
    lo, hi = int(weight.min()), int(weight.max())
    if lo < -8 or hi > 7:
        raise fail(f"{module}.weight has values in [{lo}, {hi}], outside the int4 range [-8, 7]")
    out, inp = weight.shape
    if weights_args["strategy"] == "channel":
        want = [out, 1]
    else:
        group = weights_args["group_size"]
        if inp % group:
            raise fail(f"{module}.weight in-features {inp} is not divisible by group_size {group}")
        want = [out, inp // group]
    if list(scale.shape) != want:
        raise fail(f"{module}.weight_scale has shape {list(scale.shape)}, expected {want}")
    if not scale.is_floating_point():
        raise fail(f"{module}.weight_scale is {scale.dtype}, expected a float dtype")
    if not torch.isfinite(scale).all() or not (scale > 0).all():
        raise fail(f"{module}.weight_scale has non-finite or non-positive values")


def expected_quantized(directory: Path, ignore: list[str], modules: set[str]) -> set[str]:
    """Module names the recipe targets: every Linear not ignored."""
    return {m for m in shapes.linear_modules(directory, modules) if not shapes.is_ignored(m, ignore)}


def _source_dir(info: records.Manifest | None) -> Path | None:
    """The source model recorded in the manifest, when it was a local directory that still exists."""
    if info is None or not info["source"]["local"]:
        return None
    path = Path(info["source"]["model_id"])
    return path if (path / "config.json").is_file() else None


def read_manifest(directory: Path) -> records.Manifest | None:
    """The checkpoint's manifest, None without one (check_hashes fails then, last); a damaged one fails here."""
    try:
        return manifest.read(directory)
    except FileNotFoundError:
        return None
    except QuantizeError as exc:
        raise fail(exc.message) from None


def check_untouched(reader: checkpoint.Reader, source: Path, ignored: list[str]) -> int:
    """Ignored tensors must equal the source's bit for bit (same dtype, same values)."""
    import torch

    wanted = set(ignored)
    found = 0
    for shard in checkpoint.shard_files(source):
        with checkpoint.open_shard(shard) as fh:
            for name in fh.keys():
                if name not in wanted:
                    continue
                ours = reader.get(name)
                theirs = fh.get_tensor(name)
                if ours.dtype != theirs.dtype or not torch.equal(ours, theirs):
                    raise fail(f"{name} is ignored by the recipe but differs from the source model's tensor")
                found += 1
    return found


def check_hashes(directory: Path, info: records.Manifest | None) -> int:
    if info is None:
        raise fail(f"{manifest.MANIFEST} is missing")
    for rel, entry in info["files"].items():
        path = directory / rel
        if not path.is_file():
            raise fail(f"{rel} is listed in the manifest but missing")
        if sha256_file(path) != entry["sha256"]:
            raise fail(f"{rel} does not match the sha256 recorded in the manifest")
    return len(info["files"])


def validate(directory: str | Path) -> dict:
    directory = Path(directory)
    qc = checkpoint.quantization_config(directory)
    weights_args = check_config(qc)
    ignore = list(qc.get("ignore") or [])
    info = read_manifest(directory)
    recipe_ignore = info["arguments"]["ignore"] if info else []
    ignore_all = sorted(set(ignore) | set(recipe_ignore))

    shapes_ = checkpoint.tensor_shapes(directory)
    try:  # int8 weights keep the source's shapes: every tensor config.json implies, and no layer more
        source_check.check_shapes(directory, checkpoint.read_config(directory), label="checkpoint")
    except QuantizeError as exc:
        raise fail(exc.message) from None
    quantized = set(checkpoint.quantized_modules(shapes_))
    reader = checkpoint.Reader(directory)
    for module in sorted(quantized):
        if f"{module}.weight" not in shapes_:
            raise fail(f"{module}.weight is missing, though its weight_scale is there")
        for suffix in ("weight_zero_point", "input_scale", "input_zero_point"):
            if f"{module}.{suffix}" in shapes_:
                raise fail(f"{module}.{suffix} exists, but the recipe is symmetric weights, dynamic activations")
        check_tensor_pair(
            module,
            reader.get(f"{module}.weight"),
            reader.get(f"{module}.weight_scale"),
            weights_args,
        )

    modules = {n.removesuffix(".weight") for n in shapes_ if n.endswith(".weight")}
    expected = expected_quantized(directory, ignore_all, modules)
    for module in sorted(quantized):
        if shapes.is_ignored(module, ignore_all):
            raise fail(f"{module} is ignored by the recipe (router gate or lm_head) but is stored quantized")
    for module in sorted(expected - quantized):
        if f"{module}.weight" not in shapes_:
            raise fail(f"{module}.weight is missing")
        raise fail(
            f"{module} is a Linear the recipe targets, but {module}.weight is stored unquantized "
            f"({shapes_[module + '.weight'][1]})"
        )

    ignored_tensors = sorted(f"{m}.weight" for m in modules - quantized if shapes.is_ignored(m, ignore_all))
    src = _source_dir(info)
    compared = check_untouched(reader, src, ignored_tensors) if src else 0
    files = check_hashes(directory, info)
    return {
        "directory": str(directory),
        "valid": True,
        "strategy": weights_args["strategy"],
        "group_size": weights_args.get("group_size"),
        "quantized_modules": len(quantized),
        "ignored_modules": [t.removesuffix(".weight") for t in ignored_tensors],
        "ignored_compared_to_source": compared,
        "files_verified": files,
    }
