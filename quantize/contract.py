"""The W4A8 contract: the one scheme this project writes, and what vLLM's CPU build serves where.

Every other module asks here: `validate` (the config written), `recipe_file` (a recipe before any weight is
loaded), `loaded` (the config a recipe file wrote), `recipe` (the routed experts' pattern), `smoke` and `serve`
(the pre-flight check), `card` and `reference` (the scheme's name in vLLM).
"""

from __future__ import annotations

import platform
from pathlib import Path

from . import checkpoint
from .errors import QuantizeError
from .host import is_arm

W4A8_SCHEME = "CompressedTensorsW4A8Int"  # the scheme class vLLM picks for every quantized Linear
SERVABLE = (
    "int4 symmetric channel/group weights with int8 dynamic per-token asymmetric activations "
    "(the config_groups of recipes/w4a8-mse-g32.yaml)"
)
# Routed MoE experts: `--skip-experts` leaves these in the source dtype so the checkpoint also loads on x86_64
EXPERTS_PATTERN = r"re:.*mlp\.experts\..*"
# vLLM's W4A8 MoE kernels exist only on Arm: a checkpoint with quantized routed experts does not load on x86_64
MOE_ARM_ONLY = "vLLM's W4A8 MoE kernels exist only on Arm (aarch64)"
# On other CPUs vLLM runs W4A8 Linear layers through PyTorch's reference path: the figures mean nothing for Arm.
X86_NOTE = (
    "x86_64: vLLM runs W4A8 linear layers through PyTorch's reference path (no Arm KleidiAI kernels), "
    "so the quantized model's figures here are not representative of Graviton/Ampere"
)
# activation orderings vLLM's W4A8 path refuses: they permute a layer's input groups (`g_idx`), which the
# KleidiAI packing cannot follow; "weight" (alias "static") only changes the order GPTQ rounds in
REFUSED_ACTORDER = ("group", "dynamic")


def scheme_problem(group: dict) -> str | None:
    """Why one quantization config group is not the W4A8-dynamic scheme vLLM serves on CPU, or None. Shared by
    `validate` (the written config) and `--recipe` (a recipe file, before any weight is loaded)."""
    w, a = group.get("weights") or {}, group.get("input_activations") or {}
    expected = [
        ("targets", group.get("targets"), ["Linear"]),
        ("weights.num_bits", w.get("num_bits"), 4),
        ("weights.type", w.get("type"), "int"),
        ("weights.symmetric", w.get("symmetric"), True),
        ("weights.dynamic", w.get("dynamic"), False),
        ("input_activations.num_bits", a.get("num_bits"), 8),
        ("input_activations.type", a.get("type"), "int"),
        ("input_activations.strategy", a.get("strategy"), "token"),
        ("input_activations.symmetric", a.get("symmetric"), False),
        ("input_activations.dynamic", a.get("dynamic"), True),
        ("output_activations", group.get("output_activations"), None),
    ]
    for key, got, want in expected:
        if got != want:
            return f"{key} is {got!r}, the W4A8-dynamic recipe needs {want!r}"
    if w.get("strategy") not in ("channel", "group"):
        return f"weights.strategy is {w.get('strategy')!r}, expected channel or group"
    if w.get("strategy") == "group" and not w.get("group_size"):
        return "weights.strategy is group but group_size is missing"
    if w.get("actorder") in REFUSED_ACTORDER:
        return f"weights.actorder is {w.get('actorder')!r}, which vLLM's W4A8 path refuses (use 'weight' or none)"
    return None


def online_transforms(qc: dict) -> list[str]:
    """Names of transforms a checkpoint asks vLLM to apply at run time (online Hadamard rotations need
    `hadacore_transform`, absent from vLLM's CPU build); offline ones are already fused into the weights."""
    from compressed_tensors.transform import TransformConfig

    if not qc.get("transform_config"):
        return []
    config = TransformConfig.model_validate(qc["transform_config"])
    return sorted(name for name, scheme in config.config_groups.items() if any(a.is_online() for a in scheme.apply))


def config_problem(qc: dict) -> str | None:
    """Why a checkpoint's `quantization_config` is not one W4A8-dynamic group vLLM serves on CPU, or None."""
    groups = qc.get("config_groups") or {}
    if len(groups) != 1:
        return f"expected one config group, found {len(groups)}"
    if qc.get("format") != "int-quantized":
        return f"quantization_config format is {qc.get('format')!r}, the W4A8-dynamic recipe needs 'int-quantized'"
    if problem := scheme_problem(next(iter(groups.values()))):
        return f"quantization_config {problem}"
    if online := online_transforms(qc):
        return f"quantization_config has online transforms ({', '.join(online)}), which vLLM on CPU cannot run"
    return None


def check_runnable(directory: Path) -> None:
    """Fail fast, before vLLM starts, on what this host cannot serve."""
    checkpoint.quantization_config(directory)
    if not is_arm() and checkpoint.has_quantized_experts(directory):
        raise QuantizeError(
            f"{directory} has W4A8 MoE experts, and {MOE_ARM_ONLY}; this host is {platform.machine()}",
            "run smoke on an arm64 host (Graviton, Ampere), or re-quantize with --skip-experts "
            "to leave the experts unquantized so the checkpoint also loads on x86_64",
        )
