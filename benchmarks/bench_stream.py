"""Quantizing DeepSeek-V2-Lite on a small machine: the load path, llmcompressor's `model_free_ptq` and the
streaming engine side by side in one run on the same synthetic checkpoint, plus the I/O floor (read every
input tensor, write the same number of bytes). `make bench-stream` runs it.

    python -m benchmarks.bench_stream --layers 4                # 4-layer checkpoint, all engines
    python -m benchmarks.bench_stream --layers 27 --shard-gb 5  # full size (31 GB), skips the load path (needs ~85 GB)

The synthetic checkpoint has DeepSeek-V2-Lite's exact tensor names, shapes and dtype (bf16), random values,
written shard by shard (`--shard-gb`). Peak RSS per process comes from wait4's rusage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "data" / "deepseek-v2-lite-config.json"


def tensor_specs(config_dir: Path):
    """(name, shape) of every tensor of the real checkpoint layout, from the meta model: fused 3-D experts
    expanded to DeepSeek's per-expert 2-D names."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    for name, param in model.named_parameters():
        if param.ndim == 3:  # experts.gate_up_proj [E, 2I, H] or experts.down_proj [E, H, I]
            prefix, pname = name.rsplit(".", 1)
            for e in range(param.shape[0]):
                if pname == "gate_up_proj":
                    half = param.shape[1] // 2
                    yield f"{prefix}.{e}.gate_proj.weight", (half, param.shape[2])
                    yield f"{prefix}.{e}.up_proj.weight", (half, param.shape[2])
                else:
                    yield f"{prefix}.{e}.{pname}.weight", tuple(param.shape[1:])
        else:
            yield name, tuple(param.shape)


def make_synthetic(out: Path, layers: int, shard_bytes: int) -> Path:
    import torch
    from safetensors.torch import save_file

    from tests.tiny_models import corpus, train_tokenizer

    if (out / "model.safetensors.index.json").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = json.loads(CONFIG.read_text())
    config["num_hidden_layers"] = layers
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    train_tokenizer(corpus()).save_pretrained(tmp)
    specs = list(tensor_specs(tmp))
    gen = torch.Generator().manual_seed(0)
    shards, current, used = [], {}, 0
    for name, shape in specs:
        n = 1
        for d in shape:
            n *= d
        if current and used + 2 * n > shard_bytes:
            shards.append(current)
            current, used = {}, 0
            _flush(tmp, shards, save_file)
        current[name] = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
        used += 2 * n
    shards.append(current)
    _flush(tmp, shards, save_file, final=True)
    tmp.rename(out)
    return out


def _flush(tmp: Path, shards: list, save_file, final: bool = False) -> None:
    """Write finished shards (names fixed up at the end, when the count is known)."""
    for i, tensors in enumerate(shards):
        if tensors is None:
            continue
        save_file(tensors, str(tmp / f"part-{i:05d}.safetensors"), metadata={"format": "pt"})
        shards[i] = None
    if final:
        parts = sorted(tmp.glob("part-*.safetensors"))
        weight_map, total = {}, 0
        from safetensors import safe_open

        for i, part in enumerate(parts):
            name = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            part.rename(tmp / name)
            with safe_open(tmp / name, "pt") as fh:
                weight_map.update(dict.fromkeys(fh.keys(), name))
            total += (tmp / name).stat().st_size
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def io_floor(src: Path, dst: Path) -> None:
    """Read every tensor of `src` and write the same bytes to `dst` in the streaming engine's shard size, the way
    it reads and writes, minus the quantization: the floor for any engine."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from quantize.stream import DEFAULT_SHARD_BYTES

    dst.mkdir(parents=True, exist_ok=True)
    out, used, n = {}, 0, 0
    for shard in sorted(src.glob("*.safetensors")):
        with safe_open(shard, "pt") as fh:
            names = list(fh.keys())
        for name in names:
            with safe_open(shard, "pt") as fh:
                tensor = fh.get_tensor(name)
            out[name] = tensor
            used += tensor.numel() * tensor.element_size()
            if used >= DEFAULT_SHARD_BYTES:
                _write_and_drop(out, dst / f"part-{n:05d}.safetensors", save_file)
                out, used, n = {}, 0, n + 1
    if out:
        _write_and_drop(out, dst / f"part-{n:05d}.safetensors", save_file)


def _write_and_drop(tensors: dict, path: Path, save_file) -> None:
    """Write and fsync a shard (as the engine does), then delete it: a full-size copy would not fit the disk.
    The bytes written are reported instead of the output size."""
    save_file(tensors, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    (path.parent / "bytes-written").write_text(
        str(int((path.parent / "bytes-written").read_text() or 0) + path.stat().st_size)
        if (path.parent / "bytes-written").exists() else str(path.stat().st_size)
    )  # fmt: skip
    path.unlink()


def model_free(src: Path, dst: Path, method: str) -> None:
    from llmcompressor import model_free_ptq

    from quantize.recipe import Recipe

    scheme = Recipe(method=method, scheme="channelwise").scheme_object()
    # model_free_ptq matches names only, and its `mse` observer name is broken (KeyError static-mse):
    # use the memoryless observers oneshot itself uses for weights.
    scheme.weights = scheme.weights.model_copy(update={"observer": f"memoryless_{method}"})
    model_free_ptq(str(src), str(dst), scheme=scheme,
                   ignore=["lm_head", r"re:.*mlp\.gate$", "model.embed_tokens"], max_workers=1)  # fmt: skip


def measure(cmd: list[str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        sys.stderr.write(proc.stderr.read().decode()[-2000:])
    return time.perf_counter() - t0, usage.ru_maxrss * 1024, code


def size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--shard-gb", type=float, default=5.0)
    parser.add_argument("--method", default="minmax", choices=["minmax", "mse"])
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/vllm-arm-int4-bench"))
    parser.add_argument("--engines", default="load,model_free_ptq,stream,io_floor")
    parser.add_argument("--_run", nargs=3, help=argparse.SUPPRESS)  # internal: one measured job
    args = parser.parse_args(argv)

    if args._run:
        what, src, dst = args._run
        {"io_floor": lambda: io_floor(Path(src), Path(dst)),
         "model_free_ptq": lambda: model_free(Path(src), Path(dst), args.method)}[what]()  # fmt: skip
        return 0

    src = args.workdir / f"deepseek-v2-lite-synthetic-{args.layers}l-{args.shard_gb:g}gb"
    t0 = time.perf_counter()
    make_synthetic(src, args.layers, int(args.shard_gb * 2**30))
    print(f"synthetic checkpoint: {src.name}, {size(src) / 1e9:.1f} GB, "
          f"{len(list(src.glob('*.safetensors')))} shards (ready in {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    me = [sys.executable, "-m", "benchmarks.bench_stream"]
    cli = [sys.executable, "-m", "quantize", str(src), "--scheme", "channelwise", "--method", args.method,
           "--overwrite"]  # fmt: skip
    rows = {}
    for engine in args.engines.split(","):
        dst = args.workdir / f"out-{engine}"
        shutil.rmtree(dst, ignore_errors=True)
        cmd = {
            "load": [*cli, "--engine", "load", "--output-dir", str(dst)],
            "stream": [*cli, "--engine", "stream", "--output-dir", str(dst)],
            "model_free_ptq": [*me, "--method", args.method, "--_run", "model_free_ptq", str(src), str(dst)],
            "io_floor": [*me, "--_run", "io_floor", str(src), str(dst)],
        }[engine]
        wall, rss, code = measure(cmd)
        written = dst / "bytes-written"
        out_bytes = int(written.read_text()) if written.exists() else size(dst) if dst.exists() else 0
        rows[engine] = (wall, rss, out_bytes, code)
        shutil.rmtree(dst, ignore_errors=True)
    print(f"\n{args.layers} layers, {args.method} channelwise, source shards {args.shard_gb:g} GB, "
          f"{os.cpu_count()} CPUs, one run each\n")  # fmt: skip
    print("| engine | wall time (s) | peak RSS (GiB) | output (GB) | exit |")
    print("|---|---:|---:|---:|---:|")
    for engine, (wall, rss, out, code) in rows.items():
        print(f"| {engine} | {wall:.1f} | {rss / 2**30:.2f} | {out / 1e9:.2f} | {code} |")
    if "stream" in rows and "io_floor" in rows:
        print(f"\nstream / I/O floor wall time: {rows['stream'][0] / rows['io_floor'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
