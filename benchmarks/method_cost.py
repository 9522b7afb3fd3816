"""What each method would cost on DeepSeek-V2-Lite, extrapolated from per-layer timings measured here.

The full model does not fit this machine for the calibrated methods (they load it: about 85 GB in bf16), so each
method quantizes two synthetic checkpoints with DeepSeek-V2-Lite's exact tensor shapes (benchmarks/bench_stream.py):
1 decoder layer (layer 0 is dense) and 2 (plus the first MoE layer: 64 routed experts, 2 shared). The second
minus the first is one MoE layer; DeepSeek-V2-Lite has 1 dense and 26 MoE layers, so

    full = t(1 layer) + 26 * (t(2 layers) - t(1 layer))        (same for peak RSS)

Each run is the real CLI (`python -m quantize ... --output-dir`), time and peak RSS from the manifest. The
estimate for a 16-vCPU Graviton scales by core count alone (x 2/16 from this 2-core machine, i.e. assuming
one Graviton vCPU does what one core here does and the work spreads over 16): an estimate, not a measurement.
Calibration cost grows with the calibration tokens (forward passes); the token count used is printed.

    python -m benchmarks.method_cost [--methods mse,imatrix,gptq,awq] [--calibration-samples 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from benchmarks.bench_stream import ROOT, make_synthetic
from benchmarks.quality_table import cli

V2_LITE_MOE_LAYERS = 26  # of 27: layer 0 is dense (first_k_dense_replace 1)
TARGET_VCPUS = 16
METHODS = {
    "mse": ["--method", "mse", "--scheme", "groupwise"],
    "imatrix": ["--method", "imatrix", "--scheme", "groupwise"],
    "gptq": ["--method", "gptq", "--scheme", "groupwise"],
    "awq": ["--recipe", str(ROOT / "recipes" / "deepseek-v2-awq-mse-g32.yaml")],
}
CALIBRATED = ("imatrix", "gptq", "awq")


def run(src: Path, method: str, out: Path, samples: int) -> dict:
    args = [str(src), *METHODS[method], "--output-dir", str(out), "--overwrite"]
    if method in CALIBRATED:
        args += ["--calibration-samples", str(samples)]
    cli(*args)
    info = json.loads((out / "quantization-manifest.json").read_text())
    shutil.rmtree(out)
    calibration = info["arguments"].get("calibration") or {}
    return {"seconds": info["timings_s"]["total"], "rss": info["peak_rss_bytes"], "engine": info["arguments"]["engine"],
            "tokens": calibration.get("tokens", 0)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--calibration-samples", type=int, default=16, help="windows of 512 tokens (default 16)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/vllm-arm-int4-bench"))
    args = parser.parse_args()
    methods = args.methods.split(",")
    if unknown := sorted(set(methods) - set(METHODS)):
        sys.exit(f"error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")

    started = time.time()
    sources = {n: make_synthetic(args.workdir / f"deepseek-v2-lite-synthetic-{n}l-5gb", n, 5 * 2**30) for n in (1, 2)}
    rows = []
    for method in methods:
        one, two = (run(sources[n], method, args.workdir / f"cost-{method}-{n}l", args.calibration_samples)
                    for n in (1, 2))  # fmt: skip
        layer_s, layer_rss = two["seconds"] - one["seconds"], two["rss"] - one["rss"]
        full_s = one["seconds"] + V2_LITE_MOE_LAYERS * layer_s
        rows.append((method, one, two, layer_s, full_s, one["rss"] + V2_LITE_MOE_LAYERS * layer_rss))
        print(f"{method}: 1 layer {one['seconds']:.0f} s, 2 layers {two['seconds']:.0f} s", flush=True)

    cpus = os.cpu_count()
    print(f"\n| method | engine | 1 layer | 2 layers | per MoE layer | DeepSeek-V2-Lite here ({cpus} CPUs) | "
          f"on {TARGET_VCPUS} vCPUs (estimate) | peak RSS, full model (estimate) | calibration tokens |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for method, one, two, layer_s, full_s, full_rss in rows:
        print(f"| {method} | {two['engine']} | {one['seconds']:.0f} s | {two['seconds']:.0f} s | {layer_s:.0f} s | "
              f"{full_s / 3600:.1f} h | {full_s * cpus / TARGET_VCPUS / 3600:.1f} h | {full_rss / 2**30:.0f} GiB | "
              f"{two['tokens'] or ''} |")  # fmt: skip
    print(
        f"\nMachine: {platform.machine()}, {cpus} CPUs; whole run {(time.time() - started) / 60:.0f} min. "
        f"Command: `python -m benchmarks.method_cost --methods {args.methods} "
        f"--calibration-samples {args.calibration_samples}`."
    )


if __name__ == "__main__":
    main()
