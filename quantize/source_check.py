"""The source's tensors checked before anything is written: shapes and count against what config.json implies,
dtypes this tool can quantize, and finite values.

Shapes come from the model transformers builds from config.json on the `meta` device (no memory), compared with
the safetensors headers (no data read): every parameter must be there with its shape (a tied `lm_head` may be
absent; fused 3-D experts, as transformers 5 holds them, are matched to the per-expert tensors checkpoints
store), and no decoder layer may lie beyond the config's count. A mismatch names the tensor, both shapes and the
config keys equal to the expected size (a hint: a size may also be a sum or product of keys). Checkpoints whose
names follow another convention than the model's (fewer than half found) are left to transformers, which renames
them as it loads.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import checkpoint, shapes
from .errors import QuantizeError, SourceError

QUANTIZABLE_FLOATS = ("BF16", "F16", "F32", "F64")  # safetensors dtypes a source's float tensors may have
CONFIG_FIX = "restore the model's original config.json, or download or copy the model again"
LAYER = re.compile(r"\.layers\.(\d+)\.")


def check_dtypes(headers: dict[str, tuple[list[int], str]]) -> None:
    """Float tensors must be bf16, fp16 or fp32 (float8 sources, as DeepSeek-V3/R1 ship, are not dequantized)."""
    for name, (_, dtype) in headers.items():
        if dtype.startswith("F") and dtype not in QUANTIZABLE_FLOATS:
            raise QuantizeError(
                f"source tensor {name} is {dtype}: this tool quantizes bf16, fp16 or fp32 weights",
                "dequantize the checkpoint to bf16 first (DeepSeek-V3's inference/fp8_cast_bf16.py does for its "
                "FP8 weights), then quantize that",
            )


def check_source(model_dir: Path, config: dict, trust_remote_code: bool = False) -> None:
    """What quantize checks in a source's headers before reading any weight: dtypes, then shapes."""
    check_dtypes(checkpoint.tensor_shapes(model_dir))
    check_shapes(model_dir, config, trust_remote_code)


def check_shapes(model_dir: Path, config: dict, trust_remote_code: bool = False, label: str = "source") -> None:
    """Every tensor config.json implies, with its shape, and no layer beyond its count; QuantizeError otherwise,
    its message naming the tensor as `<label> tensor NAME` (validate checks a quantized checkpoint's shapes too:
    int8 weights keep the source's shapes)."""
    headers = checkpoint.tensor_shapes(model_dir)
    expected, optional = shapes.parameter_shapes(model_dir, trust_remote_code)
    found, missing = set(), []
    for name, shape in expected.items():
        covered = (
            _fused_members(name, shape, headers, config, label) if len(shape) == 3 and name not in headers else None
        )
        if covered is not None:
            found |= covered
        elif name in headers:
            found.add(name)
            if headers[name][0] != shape:
                raise QuantizeError(
                    f"{label} tensor {name} is {headers[name][0]}, but config.json implies {shape}"
                    f"{_keys_for(config, _first_difference(shape, headers[name][0]))}",
                    CONFIG_FIX,
                )
        elif name not in optional:
            missing.append(name)
    if len(found) < len(expected) / 2:  # another naming convention: transformers' loading renames it
        return
    layers = {int(m.group(1)) for n in headers if (m := LAYER.search(n))}
    held = f"the tensors hold {max(layers) + 1} layers" if layers else "the tensors hold no layers"
    if missing:
        layer = LAYER.search(missing[0])
        beyond_held = layer and int(layer.group(1)) > max(layers, default=-1)
        why = f" (num_hidden_layers is {config.get('num_hidden_layers')}; {held})" if beyond_held else ""
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise QuantizeError(f"the {label} has no tensor {missing[0]}{more}, which config.json implies{why}", CONFIG_FIX)
    count = config.get("num_hidden_layers")
    allowed = (count or 0) + (config.get("num_nextn_predict_layers") or 0)  # DeepSeek-V3's MTP layers follow
    beyond = sorted((n for n in headers if (m := LAYER.search(n)) and int(m.group(1)) >= allowed), key=_layer_of)
    if isinstance(count, int) and beyond:
        raise QuantizeError(
            f"{label} tensor {beyond[0]} is in a layer config.json does not have "
            f"(num_hidden_layers is {count}; {held})",
            CONFIG_FIX,
        )


def _fused_members(name: str, shape: list[int], headers: dict, config: dict, label: str) -> set[str] | None:
    """The per-expert tensors a fused 3-D expert parameter `<prefix>.gate_up_proj` [E, 2I, H] or
    `<prefix>.down_proj` [E, H, I] is loaded from (`<prefix>.<e>.gate_proj.weight` and `up_proj` [I, H], or
    `<prefix>.<e>.down_proj.weight` [H, I]), checked; None when the checkpoint holds them some other way."""
    prefix, _, fused = name.rpartition(".")
    projections = ("gate_proj", "up_proj") if fused == "gate_up_proj" else (fused,)
    member_shape = [shape[1] // len(projections), shape[2]]
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.(" + "|".join(projections) + r")\.weight")
    members = {n: m for n in headers if (m := pattern.fullmatch(n))}
    if not members:
        return None
    experts = {int(m.group(1)) for m in members.values()}
    if experts != set(range(shape[0])):
        raise QuantizeError(
            f"the {label} has {len(experts)} experts under {prefix} (numbered {min(experts)}-{max(experts)}), but "
            f"config.json implies {shape[0]}{_keys_for(config, shape[0])}",
            CONFIG_FIX,
        )
    for member in sorted(members, key=_layer_of):
        if headers[member][0] != member_shape:
            raise QuantizeError(
                f"{label} tensor {member} is {headers[member][0]}, but config.json implies {member_shape}"
                f"{_keys_for(config, _first_difference(member_shape, headers[member][0]))}",
                CONFIG_FIX,
            )
    return set(members)


def _first_difference(expected: list[int], actual: list[int]) -> int | None:
    if len(expected) != len(actual):
        return None
    return next((e for e, a in zip(expected, actual, strict=True) if e != a), None)


def _keys_for(config: dict, size: int | None) -> str:
    """' (config.json keys equal to 96: hidden_size)': the likely culprits for a size; '' for none."""
    keys = [k for k, v in config.items() if type(v) is int and v == size]
    return f" (config.json keys equal to {size}: {', '.join(keys)})" if keys else ""


def _layer_of(name: str) -> tuple:
    match = LAYER.search(name)
    return (int(match.group(1)) if match else -1, name)


def check_finite(name: str, tensor) -> None:
    """Refuse a source tensor holding NaN or Inf: its scales would be NaN and the checkpoint garbage."""
    import torch

    if not tensor.is_floating_point():
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    raise SourceError(
        f"source tensor {name} has {bad} non-finite value{'s' if bad > 1 else ''} (NaN or Inf)",
        "repair the source checkpoint or download it again: quantizing it would give NaN scales",
    )


def check_all_finite(model_dir: Path) -> None:
    """`check_finite` on every tensor of the source, one at a time (its shard mapped only while it is read)."""
    reader = checkpoint.Reader(model_dir)
    for name in reader.index:
        check_finite(name, reader.get(name))
