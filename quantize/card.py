"""`README.md` in every checkpoint: a Hugging Face model card written from the checkpoint's manifest.

`quantize` writes it (and `recipe.yaml`, llmcompressor's recipe, so `oneshot(recipe="recipe.yaml")` redoes the
run); `eval` and `bench` write it again with their reports (eval-report.md, bench-report.md) included. The card
changes after the run, so it is the one file the manifest's hashes leave out (`manifest.written_files`): every
fact in it comes from the manifest or from a report file beside it, which `validate` checks or which its
command owns.

Front matter: `base_model` (a Hub id; omitted for a local source), `base_model_relation: quantized`,
`library_name: vllm`, tags, and the source card's licence fields when its README.md has them.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from . import __version__, checkpoint, manifest, recipe, records
from .contract import EXPERTS_PATTERN, MOE_ARM_ONLY, W4A8_SCHEME
from .manifest import CARD
from .output import human_size

RECIPE = "recipe.yaml"
LICENCE_FIELDS = ("license", "license_name", "license_link")
TAGS = ("w4a8", "int4", "compressed-tensors", "llmcompressor", "vllm", "cpu", "arm64")
REPORTS = ("eval-report.md", "bench-report.md")
IMAGE = f"vllm-arm-int4:{__version__}"  # the tag `make image` gives


def source_licence(source_dir: Path) -> dict:
    """The licence fields of the source's model card front matter (README.md), if it has any."""
    readme = Path(source_dir) / CARD
    if not readme.is_file():
        return {}
    match = re.match(r"---\n(.*?)\n---", readme.read_text(errors="replace"), re.S)
    fields = {}
    for line in match.group(1).splitlines() if match else []:
        key, _, value = line.partition(":")
        if key.strip() in LICENCE_FIELDS and value.strip():
            fields[key.strip()] = value.strip().strip("'\"")
    return fields


def quantize_command(info: records.Manifest) -> list[str]:
    """The `python -m quantize` command line that makes this checkpoint again (from the manifest)."""
    args, src = info["arguments"], info["source"]
    argv = ["python", "-m", "quantize", src["model_id"]]
    if args.get("recipe_file"):  # the file the user gave; this checkpoint's recipe.yaml is what it applied
        argv += ["--recipe", args["recipe_file"]]
    else:
        argv += ["--method", args["method"], "--scheme", args["scheme"]]
        if args.get("groupsize"):
            argv += ["--groupsize", str(args["groupsize"])]
        if args.get("awq_grid", recipe.AWQ_N_GRID) != recipe.AWQ_N_GRID:
            argv += ["--awq-grid", str(args["awq_grid"])]
    if args.get("skip_experts"):
        argv.append("--skip-experts")
    built_in = set(recipe.DEFAULT_IGNORE) | {EXPERTS_PATTERN}
    for pattern in args["ignore"]:
        if pattern not in built_in:
            argv += ["--ignore", pattern]
    if args.get("dtype", "auto") != "auto":
        argv += ["--dtype", args["dtype"]]
    if src.get("revision") and not src.get("local"):
        argv += ["--revision", src["revision"]]
    if args.get("trust_remote_code"):
        argv.append("--trust-remote-code")
    if calibration := args.get("calibration"):
        argv += ["--calibration", calibration["source"], "--calibration-samples", str(calibration["samples"])]
        if "seq_len" in calibration:  # manifests before it was recorded: the default, 512
            argv += ["--calibration-seq-len", str(calibration["seq_len"])]
    return argv


def _front_matter(info: records.Manifest, licence: dict) -> list[str]:
    src = info["source"]
    lines = ["---"]
    if not src.get("local"):
        lines.append(f"base_model: {src['model_id']}")
        lines.append("base_model_relation: quantized")
    lines += [f"{k}: {v}" for k, v in licence.items()]
    lines += ["library_name: vllm", "pipeline_tag: text-generation", "tags:"] + [f"- {t}" for t in TAGS] + ["---"]
    return lines


def _scheme(info: records.Manifest, name: str, arm_only: bool) -> list[str]:
    args = info["arguments"]
    weights = "per output channel" if args["scheme"] == "channelwise" else f"in groups of {args['groupsize']} inputs"
    size = sum(f["bytes"] for p, f in info["files"].items() if p.endswith(".safetensors"))
    experts = "left in the source dtype (`--skip-experts`)" if args.get("skip_experts") else "quantized like the rest"
    ignored = ", ".join(f"`{p}`" for p in args["ignore"])
    method = f"recipe file `{args['recipe_file']}`" if args.get("recipe_file") else f"method `{args['method']}`"
    observer = args.get("observer") or recipe.Recipe(method=args["method"]).observer  # older manifests: derived
    return [
        "## Scheme",
        "",
        "| | |",
        "|---|---|",
        f"| weights | int4, symmetric, one scale {weights}; {method}, observer `{observer}` |",
        "| activations | int8, asymmetric, dynamic per token (computed at run time: no calibration) |",
        f"| format | compressed-tensors `int-quantized` (vLLM: `{W4A8_SCHEME}`) |",
        f"| not quantized | {ignored} |",
        f"| routed MoE experts | {experts} |",
        f"| weights on disk | {human_size(size)} |",
        "",
        "vLLM runs it with its W4A8 kernels on Arm (KleidiAI). "
        + (
            f"`{name}` does not load on x86_64: {MOE_ARM_ONLY}."
            if arm_only
            else f"`{name}` also loads on x86_64, through vLLM's much slower reference path."
        ),
    ]


def _made(info: records.Manifest) -> list[str]:
    command = shlex.join(quantize_command(info))
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    wheel = info.get("vllm_wheel", {})
    plat = info["platform"]
    rss = info["peak_rss_bytes"] / 2**30
    return [
        "## How it was made",
        "",
        "With [vllm-arm-int4](https://github.com/vllm-arm-int4/vllm-arm-int4), from the repository's root:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"`{RECIPE}` beside this card is the llmcompressor recipe the run applied "
        f'(`oneshot(model=..., recipe="{RECIPE}")` applies it again). Versions: {packages}; vLLM from '
        f"{wheel.get('source', 'unknown')}. Made on {plat['machine']} ({plat['cpu_count']} CPUs) in "
        f"{info['timings_s']['total']:.0f} s, peak memory {rss:.1f} GiB, {info['created']}. "
        "`quantization-manifest.json` records the sha256 of every source and output file "
        "(`python -m quantize validate .` checks them).",
    ]


def _serve(name: str) -> list[str]:
    return [
        "## Serve",
        "",
        "On an arm64 host (AWS Graviton2/3/4, Ampere Altra/AmpereOne), from the directory holding this checkpoint, "
        "with vLLM's OpenAI-compatible API on port 8000 and the API key in `VLLM_API_KEY`:",
        "",
        "```bash",
        f"docker run -d --name {name} -p 127.0.0.1:8000:8000 -e VLLM_API_KEY --shm-size 4g --cap-add SYS_NICE \\",
        f'  -v "$PWD/{name}:/models/{name}:ro" {IMAGE} serve /models/{name} --host 0.0.0.0',
        f"python -m quantize serve {name}          # or without Docker, in vllm-arm-int4's environment",
        f"vllm serve {name} --max-model-len 4096   # or vLLM's CLI (a vLLM installed as `vllm`: built from source)",
        'curl http://127.0.0.1:8000/v1/completions -H "Authorization: Bearer $VLLM_API_KEY" \\',
        f'  -H \'Content-Type: application/json\' -d \'{{"model": "{name}", "prompt": "The capital of France is", '
        '"max_tokens": 32}\'',
        "```",
        "",
        "Images built for `VLLM_ARM_ISA=neoverse-n1` (the default) run on every Graviton and Ampere CPU; "
        "`bf16-i8mm` builds are faster on Graviton3/4 and AmpereOne and refuse to start on Graviton2/Altra. "
        "Graviton2 and Ampere Altra (Neoverse N1) have no bf16: there `python -m quantize serve` runs vLLM in "
        "float32 by itself (unquantized embeddings and lm_head, and the KV cache, take twice the memory), and "
        "`vllm serve` needs `--dtype float32`.",
    ]


def _reports(directory: Path) -> list[str]:
    lines = ["## Quality and speed", ""]
    found = [directory / r for r in REPORTS if (directory / r).is_file()]
    for report in found:
        text = re.sub(r"^(#+) ", r"\1## ", report.read_text().strip(), flags=re.M)  # one level below this card's
        lines += [text, ""]
    if not found:
        lines += [
            "Not measured yet. `python -m quantize eval DIR --source SOURCE` (perplexity, top-1 agreement, KL "
            "against the source, through vLLM) and `python -m quantize bench DIR` add their tables here.",
            "",
        ]
    return lines


def write(directory: Path, name: str | None = None) -> Path:
    """(Re)write the card of the checkpoint in `directory` (named `name`, default the directory's name: quantize
    writes it before the rename) from its manifest and reports; returns its path."""
    directory = Path(directory)
    info = manifest.read(directory)
    src = info["source"]
    name = name or directory.name
    base = Path(src["model_id"].rstrip("/")).name
    title = f"# {name}\n\nW4A8-dynamic quantization of " + (
        f"[{src['model_id']}](https://huggingface.co/{src['model_id']})" if not src.get("local") else f"`{base}`"
    )
    lines = _front_matter(info, src.get("licence", {})) + ["", title + " for vLLM on Arm CPUs.", ""]
    lines += (
        _scheme(info, name, checkpoint.has_quantized_experts(directory))
        + [""]
        + _made(info)
        + [""]
        + _serve(name)
        + [""]
    )
    lines += _reports(directory)
    path = directory / CARD
    tmp = path.with_name(f".{CARD}.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)
    return path
