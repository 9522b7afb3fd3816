"""The headline path on Arm kernels: a tiny DeepSeek-V2 (MLA + MoE) quantized W4A8, validated, and run by vLLM.

Run by `make test-arm64` (tests/arm64/run.sh) with an aarch64 Python: natively on an arm64 host, or inside
the emulated environment of tests/arm64/emulated.sh on x86_64 (ARM64_CPU: QEMU's CPU). For minmax channelwise
and groupwise-32 it runs the real CLI (`python -m quantize`, `validate`, `smoke`), and likewise for the
calibrated methods and recipe files (imatrix, gptq and awq-gptq groupwise-32, the MoE-safe AWQ recipe
recipes/deepseek-v2-awq-mse-g32.yaml and awq-gptq without routed experts, deepseek-v2-awq-gptq-g32-shared.yaml),
and for the tiny Llama channelwise and groupwise-32 (`--variants` picks), and checks that

- vLLM chose its Arm W4A8 MoE backend (the "Using CPU_INT4 W4A8 Int8 MoE backend" log line) and every MoE
  layer got CompressedTensorsW4A8Int8MoEMethod,
- the quantized Linear layers run on the W4A8 linear kernel (Dynamic4bitLinearKernel),
- `smoke --reference` passes: every W4A8 Linear, run by vLLM's Arm kernel, matches the checkpoint's dequantized
  weights, and vLLM's next-token distributions match the float32 PyTorch reference (quantize/reference/),
- vLLM ran in the dtype this CPU can run (float32 without bf16: Neoverse N1, known here from the emulated CPU's
  name or /proc/cpuinfo, not from the code under test), and on such a CPU `smoke --dtype bfloat16` of a
  channelwise checkpoint is refused before vLLM starts,
- `serve` answers a completion (the first groupwise DeepSeek-V2 checkpoint),

then that two faults are caught: the groupwise checkpoint with two experts swapped (tools/faults.py) must fail
`smoke --reference` against the good one (the experts are checked end to end only), and a checkpoint with a
deliberately wrong recipe (an expert group size that does not divide the experts' intermediate size) is
refused by vLLM, with vLLM's own error shown. Prints each step's time.

    python tests/arm64/check.py [--work DIR] [--max-tokens N] [--variants NAME,...]

The models are the test suite's committed tiny DeepSeek-V2 and Llama (tests/data/tiny-models/), the same bytes on
every machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from quantize import detached  # noqa: E402
from tests.tiny_models import fixture  # noqa: E402
from tools import faults  # noqa: E402

MOE_BACKEND_LINE = "Using CPU_INT4 W4A8 Int8 MoE backend"
MOE_METHOD = "CompressedTensorsW4A8Int8MoEMethod"
LINEAR_KERNEL = "Dynamic4bitLinearKernel"
CALIBRATION = ["--calibration-seq-len", "64", "--calibration-samples", "8"]  # 512 tokens: minutes under emulation
MINMAX_CW = ["--method", "minmax", "--scheme", "channelwise"]
MINMAX_G32 = ["--method", "minmax", "--scheme", "groupwise", "--groupsize", "32"]
VARIANTS = {  # name -> (tiny model, quantize options)
    "minmax-channelwise": ("deepseek_v2", MINMAX_CW),
    "minmax-groupwise-32": ("deepseek_v2", MINMAX_G32),
    "imatrix-groupwise-32": ("deepseek_v2", ["--method", "imatrix", "--scheme", "groupwise", *CALIBRATION]),
    "gptq-groupwise-32": ("deepseek_v2", ["--method", "gptq", "--scheme", "groupwise", *CALIBRATION]),
    "awq-recipe": ("deepseek_v2", ["--recipe", "recipes/deepseek-v2-awq-mse-g32.yaml", *CALIBRATION]),
    "awq-gptq-groupwise-32": ("deepseek_v2", ["--method", "awq-gptq", "--scheme", "groupwise", *CALIBRATION]),
    "awq-gptq-shared-recipe": (
        "deepseek_v2",
        ["--recipe", "recipes/deepseek-v2-awq-gptq-g32-shared.yaml", *CALIBRATION],
    ),
    "llama-minmax-channelwise": ("llama", MINMAX_CW),
    "llama-minmax-groupwise-32": ("llama", MINMAX_G32),
}
FAULTS_ON = "minmax-groupwise-32"  # the checkpoint the planted faults start from, and the one served
# QEMU CPUs without FEAT_BF16 (the ones this recipe meets: Neoverse N1 = Graviton2, Ampere Altra)
NO_BF16_CPUS = ("neoverse-n1", "cortex-a76", "cortex-a72", "cortex-a57", "cortex-a53", "a64fx")
PROMPTS = ["The red fox", "one two three"]
MOE = "model.layers.1.mlp"  # the tiny DeepSeek-V2's MoE block
BAD_GROUP = 128  # divides hidden_size 256, not the experts' intermediate size 192 (tests/tiny_models.py)

steps: list[tuple[str, float, str]] = []


class CheckFailed(Exception):
    pass


def step(name: str, argv: list[str], expect_ok: bool = True) -> subprocess.CompletedProcess:
    """Run one command of the recipe, record its time; stderr is kept for the backend checks."""
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    ok = (result.returncode == 0) == expect_ok
    steps.append((name, seconds, "ok" if ok else f"FAILED (exit {result.returncode})"))
    print(f"    exit {result.returncode} after {seconds:.0f} s", flush=True)
    if not ok:
        sys.stderr.write(result.stderr[-6000:])
        sys.stdout.write(result.stdout[-2000:])
        raise CheckFailed(f"{name}: exit {result.returncode}")
    return result


def quantize_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "quantize", *args]


def cpu_has_bf16() -> bool:
    """Told by the emulated CPU's name (TEST_ARM64_CPU, QEMU's -cpu) or, natively, by /proc/cpuinfo's Features;
    the package reads HWCAP2 instead, so this is an independent answer."""
    cpu = os.environ.get("TEST_ARM64_CPU")
    if cpu:
        return cpu.split(",")[0] not in NO_BF16_CPUS
    features = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("Features")]
    return bool(features) and "bf16" in features[0].split(":", 1)[1].split()


def check_smoke(name: str, result: subprocess.CompletedProcess) -> None:
    report = json.loads(result.stdout)
    layers, agreement = report["layers"], report["agreement"]
    moe = VARIANTS[name][0] == "deepseek_v2"
    backend = [line for line in result.stderr.splitlines() if MOE_BACKEND_LINE in line]
    found = {
        "moe backend log line": backend[0].split("] ", 1)[-1] if backend else None,
        "moe methods": layers["moe_methods"],
        "moe layers": layers["moe_layers"],
        "w4a8 linear layers": layers["w4a8_linear_layers"],
        "dtype": report["dtype"],
        "linear kernels": layers["linear_kernels"],
        "reference check": agreement["verdict"],
        "worst layer": f"{agreement['layers']['worst_layer']}: {agreement['layers']['value']}",
        "next-token mean KL": f"{agreement['logprobs']['value']}, top-1 {agreement['logprobs']['top1_matches']}"
        f"/{agreement['logprobs']['positions']}",
        "generated": [o["text"] for o in report["outputs"]],
    }
    for key, value in found.items():
        print(f"    {key}: {value}")
    problems = []
    if moe and not backend:
        problems.append(f"no '{MOE_BACKEND_LINE}' line in vLLM's log")
    if moe and (layers["moe_methods"] != [MOE_METHOD] or layers["moe_layers"] < 1):
        problems.append(f"MoE layers use {layers['moe_methods']}, expected [{MOE_METHOD}]")
    expected_dtype = "auto" if cpu_has_bf16() else "float32"
    if report["dtype"]["dtype"] != expected_dtype:
        problems.append(f"vLLM ran in {report['dtype']['dtype']}, expected {expected_dtype} on this CPU")
    if LINEAR_KERNEL not in layers["linear_kernels"] or layers["other_quantized_linear_layers"]:
        problems.append(f"linear kernels {layers['linear_kernels']}, expected {LINEAR_KERNEL} for every layer")
    if not agreement["passed"]:
        problems.append(f"the reference check failed: {agreement['verdict']}")
    if problems:
        raise CheckFailed(f"{name}: " + "; ".join(problems))


def plant_bad_recipe(good: Path, bad: Path) -> None:
    """A copy of a groupwise checkpoint whose recipe gives the routed experts a group size they cannot have.

    The experts get their own config group (a regex target, which compressed-tensors and vLLM prefer over the
    class target "Linear" of the other layers), with group size 128: it divides hidden_size 256 but not the
    experts' intermediate size 192.
    """
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(good, bad)
    config = json.loads((bad / "config.json").read_text())
    groups = config["quantization_config"]["config_groups"]
    experts = copy.deepcopy(next(iter(groups.values())))
    experts["targets"] = [r"re:.*mlp\.experts\.\d+\..*"]
    experts["weights"]["group_size"] = BAD_GROUP
    groups["experts"] = experts
    (bad / "config.json").write_text(json.dumps(config, indent=2))


def check_serve(checkpoint: Path, work: Path) -> None:
    """`serve --detach` answers its first completion; then one more, asked here; then the server is stopped."""
    key = os.urandom(12).hex()
    env = {**os.environ, "VLLM_API_KEY": key}
    with socket.socket() as probe:  # a free loopback port, whatever else runs on this host
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = quantize_cli(
        "serve", str(checkpoint), "--detach", "--eager", "--port", str(port), "--log", str(work / "serve.log")
    )
    print(f"\n=== serve: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        steps.append(("serve", time.perf_counter() - t0, f"FAILED (exit {result.returncode})"))
        sys.stderr.write(result.stderr[-4000:])
        raise CheckFailed(f"serve: exit {result.returncode}")
    served = json.loads(result.stdout)
    try:
        body = json.dumps({"model": served["model"], "prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0})
        request = urllib.request.Request(
            f"{served['url']}/completions",
            body.encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.load(response)
    finally:
        detached.stop(served["pid"])  # SIGKILL after a grace: an API server can outlive its engine under QEMU
    steps.append(("serve, one completion", time.perf_counter() - t0, "ok"))
    print(f"    ready after {served['seconds_to_first_answer']} s, dtype {served['dtype']}")
    print(f"    answered: {answer['choices'][0]['text']!r} ({answer['usage']['completion_tokens']} tokens)")
    if answer["usage"]["completion_tokens"] != 4:
        raise CheckFailed(f"serve answered {answer['usage']['completion_tokens']} tokens, asked for 4")


def vllm_error(stderr: str) -> str:
    """The last exception line vLLM printed (the one a user would read)."""
    lines = [line.strip() for line in stderr.splitlines() if "Error:" in line or "Error(" in line]
    return lines[-1] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TEST_ARM64_WORK", "/tmp/test-arm64")))
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from %(default)s")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if FAULTS_ON not in variants:
        variants.insert(0, FAULTS_ON)
    if platform.machine() not in ("aarch64", "arm64"):
        print("test-arm64: error: needs an aarch64 Python (fix: make test-arm64, which prepares one)", file=sys.stderr)
        return 2
    emulated = os.environ.get("TEST_ARM64_EMULATED") == "1"
    print(
        f"machine: {platform.machine()}, {'emulated (QEMU user mode)' if emulated else 'native'}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"cpu: {os.environ.get('TEST_ARM64_CPU', 'native')}, bf16: {cpu_has_bf16()}")
    try:
        prompts = [a for p in PROMPTS for a in ("--prompt", p)]
        outputs = {}
        for name in variants:
            out = args.work / f"out-{name}"
            model, options = VARIANTS[name]
            step(
                f"quantize {name}", quantize_cli(str(fixture(model)), *options, "--output-dir", str(out), "--overwrite")
            )
            step(f"validate {name}", quantize_cli("validate", str(out)))
            result = step(
                f"smoke --reference {name}",
                quantize_cli(
                    "smoke", str(out), "--reference", "--eager", "--max-tokens", str(args.max_tokens), *prompts
                ),
            )
            check_smoke(name, result)
            outputs[name] = out
        if not cpu_has_bf16():
            channelwise = [n for n in variants if "channelwise" in n]
            if channelwise:
                result = step(
                    f"smoke --dtype bfloat16 {channelwise[0]} (must be refused)",
                    quantize_cli("smoke", str(outputs[channelwise[0]]), "--dtype", "bfloat16"),
                    expect_ok=False,
                )
                if (
                    "torch's W4A8 kernel refuses bf16 activations" not in result.stderr
                    or "Initializing" in result.stderr
                ):
                    raise CheckFailed(f"--dtype bfloat16 was not refused up front: {result.stderr[-500:]!r}")
        check_serve(outputs[FAULTS_ON], args.work)
        swapped = faults.plant(outputs[FAULTS_ON], args.work / "out-swapped-experts", faults.swap_experts(MOE))
        result = step(
            "smoke --reference, experts 1 and 2 swapped (must fail)",
            quantize_cli(
                "smoke",
                str(swapped),
                "--reference",
                str(outputs[FAULTS_ON]),
                "--eager",
                "--max-tokens",
                str(args.max_tokens),
                *prompts,
            ),
            expect_ok=False,
        )
        caught = json.loads(result.stdout)["agreement"]
        print(f"    reference check: {caught['verdict']}")
        if caught["passed"] or caught["logprobs"]["passed"]:
            raise CheckFailed(f"swapped experts were not caught by the next-token check: {caught['verdict']}")
        bad = args.work / "out-bad-recipe"
        plant_bad_recipe(outputs[FAULTS_ON], bad)
        result = step(
            f"smoke, experts group size {BAD_GROUP} (must fail)",
            quantize_cli("smoke", str(bad), "--eager", "--max-tokens", "1", *prompts[:2]),
            expect_ok=False,
        )
        error = vllm_error(result.stderr)
        print(f"    vLLM's error: {error}")
        if f"Group size ({BAD_GROUP}) must evenly divide" not in error:
            sys.stderr.write(result.stderr[-4000:])
            raise CheckFailed(f"the bad recipe failed, but not with vLLM's group size error: {error!r}")
    except CheckFailed as exc:
        print(f"\ntest-arm64: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nstep times:")
        for name, seconds, status in steps:
            print(f"  {seconds:8.1f} s  {status:<18} {name}")
        print(f"  {time.perf_counter() - t0:8.1f} s  total")
    print("\ntest-arm64: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
