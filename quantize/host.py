"""The CPU this runs on, and what it means for vLLM's W4A8 kernels: the one place these facts are written."""

from __future__ import annotations

import platform
from pathlib import Path

# vLLM's W4A8 MoE kernels exist only on Arm: a checkpoint with quantized routed experts does not load on x86_64
# (`--skip-experts` leaves them unquantized).
MOE_ARM_ONLY = "vLLM's W4A8 MoE kernels exist only on Arm (aarch64)"
# On other CPUs vLLM runs W4A8 Linear layers through PyTorch's reference path: the figures mean nothing for Arm.
X86_NOTE = (
    "x86_64: vLLM runs W4A8 linear layers through PyTorch's reference path (no Arm KleidiAI kernels), "
    "so the quantized model's figures here are not representative of Graviton/Ampere"
)
# (implementer, part) from /proc/cpuinfo -> core name, for the CPUs this recipe targets
ARM_PARTS = {
    ("0x41", "0xd0c"): "Arm Neoverse-N1 (Graviton2, Ampere Altra)",
    ("0x41", "0xd40"): "Arm Neoverse-V1 (Graviton3)",
    ("0x41", "0xd4f"): "Arm Neoverse-V2 (Graviton4)",
    ("0x41", "0xd49"): "Arm Neoverse-N2",
    ("0x41", "0xd8e"): "Arm Neoverse-N3",
    ("0xc0", "0xac3"): "Ampere AmpereOne",
    ("0xc0", "0xac4"): "Ampere AmpereOne",
}


def is_arm() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def cpu_model() -> str:
    try:
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())
            if v
        )
    except OSError:
        return platform.processor() or "unknown"
    if "model name" in fields:
        return fields["model name"]
    key = (fields.get("CPU implementer", ""), fields.get("CPU part", ""))
    return ARM_PARTS.get(key, f"Arm implementer {key[0]} part {key[1]}")
