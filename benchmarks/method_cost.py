"""What each method would cost on DeepSeek-V2-Lite, extrapolated from per-layer timings measured here, per engine.

The full model does not fit this machine in RAM (about 85 GB in bf16 loaded), so each method quantizes two
synthetic checkpoints with DeepSeek-V2-Lite's exact tensor shapes (benchmarks/bench_stream.py) and A and B
decoder layers (layer 0 is dense, every later one MoE: 64 routed experts, 2 shared; default 1 and 2). The
difference is B - A MoE layers; DeepSeek-V2-Lite has 1 dense and 26 MoE layers, so

    full = t(A) + (27 - A) / (B - A) * (t(B) - t(A))        (same for peak RSS)

For the offload engine, whose peak is one layer's working set, measure with A >= 2 (`--layers 2,3`): then both
sizes hold an MoE layer and whatever still grows per layer is what gets extrapolated.

Each run is the real CLI (`python -m quantize ... --engine E --output-dir`), time and peak RSS from the manifest;
for each method and size the engines run one after the other, and their outputs are compared tensor by tensor
(the `same output` column). The estimate for a 16-vCPU Graviton scales by core count alone (x CPUs/16, i.e.
assuming one Graviton vCPU does what one core here does and the work spreads over 16): an estimate, not a
measurement. Calibration cost grows with the calibration tokens (forward passes); the token count is printed.

    python -m benchmarks.method_cost [--methods mse,imatrix,gptq,awq] [--engines auto] [--layers 1,2]
    python -m benchmarks.method_cost --methods gptq --engines load,offload --layers 2,3 --calibration-samples 4
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

V2_LITE_LAYERS = 27  # 1 dense (first_k_dense_replace 1), 26 MoE
TARGET_VCPUS = 16
METHODS = {
    "mse": ["--method", "mse", "--scheme", "groupwise"],
    "imatrix": ["--method", "imatrix", "--scheme", "groupwise"],
    "gptq": ["--method", "gptq", "--scheme", "groupwise"],
    "awq": ["--recipe", str(ROOT / "recipes" / "deepseek-v2-awq-mse-g32.yaml")],
    "awq-gptq": ["--method", "awq-gptq", "--scheme", "groupwise"],
    # awq-gptq with the routed experts unsmoothed (the recipe's comment says why one would)
    "awq-gptq-shared": ["--recipe", str(ROOT / "recipes" / "deepseek-v2-awq-gptq-g32-shared.yaml")],
}
CALIBRATED = ("imatrix", "gptq", "awq", "awq-gptq", "awq-gptq-shared")
ENGINES = ("auto", "load", "offload", "stream")


def run(src: Path, method: str, engine: str, out: Path, samples: int) -> dict:
    args = [str(src), *METHODS[method], "--engine", engine, "--output-dir", str(out), "--overwrite"]
    if method in CALIBRATED:
        args += ["--calibration-samples", str(samples)]
    private = cli(*args).peak_private_bytes
    info = json.loads((out / "quantization-manifest.json").read_text())
    calibration = info["arguments"].get("calibration") or {}
    return {"seconds": info["timings_s"]["total"], "rss": info["peak_rss_bytes"], "private": private,
            "engine": info["arguments"]["engine"], "tokens": calibration.get("tokens", 0), "out": out}  # fmt: skip


def same_tensors(first: Path, second: Path) -> bool:
    """Whether two checkpoints hold the same tensors, bit for bit (file layout and order may differ)."""
    from safetensors import safe_open

    def tensors(directory: Path) -> dict:
        found = {}
        for path in sorted(directory.glob("*.safetensors")):
            with safe_open(path, "pt") as f:
                found.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (safe_open is no dict)
        return found

    a, b = tensors(first), tensors(second)
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a)


def extrapolate(small: dict, large: dict, layers: tuple[int, int], key: str) -> float:
    """Linear in the layer count; a peak (rss, private) that did not grow is held, not extrapolated downward."""
    per_layer = (large[key] - small[key]) / (layers[1] - layers[0])
    if key != "seconds":
        per_layer = max(per_layer, 0.0)
    return small[key] + (V2_LITE_LAYERS - layers[0]) * per_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--engines", default="auto", help=f"comma-separated, of {', '.join(ENGINES)} (default auto)")
    parser.add_argument("--layers", default="1,2", help="the two checkpoint sizes A,B in decoder layers (default 1,2)")
    parser.add_argument("--calibration-samples", type=int, default=16, help="windows of 512 tokens (default 16)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/vllm-arm-int4-bench"))
    args = parser.parse_args()
    methods, engines = args.methods.split(","), args.engines.split(",")
    if unknown := sorted(set(methods) - set(METHODS)) + sorted(set(engines) - set(ENGINES)):
        sys.exit(f"error: unknown method(s) or engine(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} "
                 f"and {', '.join(ENGINES)}")  # fmt: skip
    try:
        layers = tuple(int(n) for n in args.layers.split(","))
        assert len(layers) == 2 and 1 <= layers[0] < layers[1] <= V2_LITE_LAYERS
    except (ValueError, AssertionError):
        sys.exit(f"error: --layers {args.layers!r} is not two sizes A<B in 1..{V2_LITE_LAYERS}, e.g. 1,2")

    started = time.time()
    sources = {n: make_synthetic(args.workdir / f"deepseek-v2-lite-synthetic-{n}l-5gb", n, 5 * 2**30) for n in layers}
    rows = []
    for method in methods:
        runs = {}  # (engine, layers) -> run
        for n in layers:
            for engine in engines:
                runs[engine, n] = run(sources[n], method, engine, args.workdir / f"cost-{method}-{engine}-{n}l",
                                      args.calibration_samples)  # fmt: skip
                done = runs[engine, n]
                print(f"{method} {engine}: {n} layers {done['seconds']:.0f} s, {done['rss'] / 2**30:.2f} GiB RSS, "
                      f"{done['private'] / 2**30:.2f} GiB private", flush=True)  # fmt: skip
            same = all(same_tensors(runs[engines[0], n]["out"], runs[e, n]["out"]) for e in engines[1:])
            for engine in engines:
                runs[engine, n]["same"] = same if len(engines) > 1 else None
                shutil.rmtree(runs[engine, n]["out"])
        for engine in engines:
            small, large = runs[engine, layers[0]], runs[engine, layers[1]]
            full = [extrapolate(small, large, layers, key) for key in ("seconds", "rss", "private")]
            rows.append((method, engine, small, large, *full))

    cpus = os.cpu_count()
    a, b = layers
    print(f"\n| method | engine | {a} layer(s) | {b} layers | peak RSS {a} / {b} | DeepSeek-V2-Lite here ({cpus} CPUs) "
          f"| on {TARGET_VCPUS} vCPUs (estimate) | peak private {a} / {b} | full model (extrapolated): peak RSS, "
          "private | same output | calibration tokens |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for method, _, small, large, full_s, full_rss, full_private in rows:
        same = {None: "", True: "identical", False: "**differs**"}[large["same"] and small["same"]]
        print(f"| {method} | {large['engine']} | {small['seconds']:.0f} s | {large['seconds']:.0f} s | "
              f"{small['rss'] / 2**30:.2f} / {large['rss'] / 2**30:.2f} GiB | {full_s / 3600:.1f} h | "
              f"{full_s * cpus / TARGET_VCPUS / 3600:.1f} h | "
              f"{small['private'] / 2**30:.2f} / {large['private'] / 2**30:.2f} GiB | "
              f"{full_rss / 2**30:.1f} GiB, {full_private / 2**30:.1f} GiB | {same} | "
              f"{large['tokens'] or ''} |")  # fmt: skip
    print(
        f"\nMachine: {platform.machine()}, {cpus} CPUs; whole run {(time.time() - started) / 60:.0f} min. "
        f"Command: `python -m benchmarks.method_cost --methods {args.methods} --engines {args.engines} "
        f"--layers {args.layers} --calibration-samples {args.calibration_samples}`."
    )


if __name__ == "__main__":
    main()
