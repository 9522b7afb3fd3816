"""Quantize a model with llmcompressor's `oneshot`, exactly the seed's recipe, with safe output handling.

Differences from the seed, all deliberate:
- the model is loaded in its checkpoint dtype (bf16 for DeepSeek-V2-Lite), not upcast to fp32
  (`dtype="float32"` reproduces the seed);
- the group size is checked against every layer before any weight is downloaded or loaded;
- bad input is refused before any work, in one line: a config.json transformers cannot build, unreadable or
  missing weight shards, too little free space for the output; a missing tokenizer is a warning;
- MoE router gates are ignored by name, and experts can be left unquantized (`skip_experts`);
- the output appears atomically, with a manifest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import calibration, card, corpus, hashing, loaded, manifest, output, shapes, source, source_check, stream
from .errors import QuantizeError, warn
from .recipe import Recipe
from .records import Arguments

logger = logging.getLogger(__name__)

DTYPES = ("auto", "bfloat16", "float16", "float32")
LOAD_DTYPE_BYTES = {"auto": 0, "bfloat16": 2, "float16": 2, "float32": 4}  # 0: the checkpoint's own


@dataclass(frozen=True)
class Job:
    model_id: str
    recipe: Recipe
    output_dir: Path
    revision: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    overwrite: bool = False
    # How the weights are held while quantizing (not vLLM's engine): "load" (oneshot on the loaded model), "offload"
    # (oneshot on a model whose weights wait on disk, onloaded a decoder layer at a time), "stream" (tensor by
    # tensor, data-free methods), "auto" (what --engine defaults to: offload or stream where they apply, else load)
    engine: str = "auto"
    shard_bytes: int = stream.DEFAULT_SHARD_BYTES
    calibration: str = "builtin:calibration"  # text for calibrated methods (gptq, imatrix): see corpus.py
    calibration_samples: int = 128  # at most this many windows of calibration_seq_len tokens
    calibration_seq_len: int = 512


@dataclass
class _Work:
    """One quantization under way: what both engines read, and what the manifest records."""

    job: Job
    src: source.Source
    target: Path
    timer: manifest.Timer
    arguments: Arguments  # the manifest's `arguments`; the engines add what they learn (calibration, shard counts)
    hashes: Future  # sha256 of the source files, computed beside the quantization (hashlib releases the GIL)
    windows: list | None  # calibrated methods: the calibration text's token windows, checked by prepare
    # the loaded model's class name and whether it is MoE: what AWQ's mappings depend on (Recipe.modifiers)
    architecture: str = ""
    moe: bool = False

    @contextlib.contextmanager
    def output(self, resumable: bool = False) -> Iterator[Path]:
        """The finish both engines share: yield the partial directory to write into; then write the recipe, the
        manifest and the model card there, rename it to the target and log what the run cost."""
        job = self.job
        with output.atomic_directory(self.target, overwrite=job.overwrite, resumable=resumable) as partial:
            yield partial
            (partial / card.RECIPE).write_text(job.recipe.yaml(self.architecture, self.moe))
            source_info = {"model_id": job.model_id, "revision": self.src.revision or job.revision,
                           "local": self.src.is_local, "licence": card.source_licence(self.src.path),
                           "files": self.hashes.result()}  # fmt: skip
            info = manifest.build(source=source_info, arguments=self.arguments, timings=self.timer.as_dict(),
                                  directory=partial)  # fmt: skip
            manifest.write(partial, info)
            card.write(partial, self.target.name)
        logger.info("Quantized model saved to: %s", self.target)
        logger.info("Peak RSS %.2f GiB, total %.1f s", info["peak_rss_bytes"] / 2**30, info["timings_s"]["total"])


def output_path(model_id: str, recipe: Recipe, output_dir: str | None, output_root: str | None) -> Path:
    """`--output-dir` wins; otherwise the seed's name under `--output-root` (default: current directory)."""
    if output_dir:
        return Path(output_dir)
    return Path(output_root or ".") / recipe.output_name(model_id)


def run(job: Job) -> Path:
    """Quantize `job.model_id` into `job.output_dir`; returns the final directory."""
    timer = manifest.Timer()
    target = Path(job.output_dir).absolute()
    src, engine, windows = prepare(job, target, timer)
    arguments = {**job.recipe.as_dict(), "dtype": job.dtype, "trust_remote_code": job.trust_remote_code,
                 "engine": engine}  # fmt: skip
    hashes = ThreadPoolExecutor(max_workers=1).submit(hashing.file_hashes, src.path)
    work = _Work(job, src, target, timer, arguments, hashes, windows)
    if engine == "stream":
        _stream(work)
    elif engine == "offload":
        with output.scratch_directory(target, "offload") as offload_dir:
            loaded.run(work, offload_dir)
    else:
        loaded.run(work)
    return target


def prepare(job: Job, target: Path, timer: manifest.Timer) -> tuple[source.Source, str, list | None]:
    """Every check that needs no weights, then the download: returns the local source, the engine to use and,
    for calibrated methods, the calibration text's token windows (checked before any weight is read)."""
    output.check_target(target, job.overwrite)
    source.check_trust_remote_code(job.model_id, job.revision, job.trust_remote_code)
    with timer("check"):
        src = source.resolve(job.model_id, job.revision, config_only=True, trust_remote_code=job.trust_remote_code)
        output.check_apart(target, src.path)
        config = source.buildable_config(src, job.trust_remote_code)
        shapes.check_group_size(job.recipe, list(shapes.quantizable_in_features(src.path, job.trust_remote_code)))
        texts = corpus.load_texts(job.calibration) if job.recipe.calibrated else None
    with timer("download"):
        if not src.is_local:
            src = source.resolve(job.model_id, job.revision, trust_remote_code=job.trust_remote_code)
    if not list(src.path.glob("*.safetensors")):
        raise QuantizeError(
            f"{job.model_id} has no *.safetensors weights",
            "convert the checkpoint to safetensors (transformers save_pretrained does) and retry",
        )
    with timer("check"):
        source_check.check_source(src.path, config, job.trust_remote_code)
    check_tokenizer(job, src.path, target)
    windows = calibration.calibration_windows(job, src.path, texts) if texts is not None else None
    engine = choose_engine(job, src.path)
    needed = stream.estimate_output_bytes(src.path, job.recipe, LOAD_DTYPE_BYTES[job.dtype], job.trust_remote_code)
    if engine == "offload":  # the offloaded weights: a copy of the source's, upcast by --dtype float32
        needed += sum(p.stat().st_size for p in src.path.glob("*.safetensors")) * (2 if job.dtype == "float32" else 1)
    output.check_free_space(target, needed, resumable=engine == "stream")
    if engine != "stream":  # the streaming engine checks each tensor as it reads it
        with timer("check values"):
            source_check.check_all_finite(src.path)
    return src, engine, windows


def _stream(work: _Work) -> None:
    """Tensor by tensor into a resumable partial directory (stream.py)."""
    job = work.job
    fingerprint = {"source": hashing.file_stats(work.src.path), "arguments": dict(work.arguments),
                   "shard_bytes": job.shard_bytes}  # fmt: skip
    with work.output(resumable=True) as partial, work.timer("quantize"):
        stats = stream.run(work.src.path, job.recipe, partial, fingerprint, job.shard_bytes, job.trust_remote_code)
        work.arguments.update(stats)


def check_tokenizer(job: Job, source_dir: Path, target: Path) -> bool:
    """Whether the source has a tokenizer. Without one the checkpoint has none either, and vLLM cannot serve it
    until one is added: a warning, as that can be done afterwards; but a calibrated method cannot tokenize its
    text: an error."""
    if source.has_tokenizer(source_dir):
        return True
    missing = f"{job.model_id} has no tokenizer (none of {', '.join(source.TOKENIZER_FILES)})"
    if job.recipe.calibrated:
        raise QuantizeError(
            f"{missing}, and {job.recipe.option} needs one to tokenize its calibration text",
            f"copy the original model's tokenizer files into {source_dir}",
        )
    warn(
        f"{missing}, so the quantized checkpoint will have none and vLLM cannot serve it",
        f"copy the original model's tokenizer files into {target} after quantizing",
    )
    return False


def choose_engine(job: Job, source_dir: Path) -> str:
    """`auto`: calibrated methods offload (bounded memory), data-free ones stream where streaming applies
    (safetensors, per-module tensor names, the checkpoint's dtype), else load."""
    if job.engine == "load":
        return "load"
    if rotations := job.recipe.rotations:
        if job.engine != "auto":
            raise QuantizeError(
                f"{job.recipe.option} rotates weights ({', '.join(rotations)}), which cannot run with the weights "
                f"offloaded or streamed",
                "use --engine load (or auto)",
            )
        logger.info("%s rotates weights (%s): loading the whole model.", job.recipe.option, ", ".join(rotations))
        return "load"
    if job.engine == "offload":
        return "offload"
    if job.recipe.calibrated:
        if job.engine == "stream":
            raise QuantizeError(
                f"the streaming engine cannot quantize with {job.recipe.option}: it runs calibration text through "
                "the model",
                "use --engine offload (or auto)",
            )
        logger.info("Calibrating with the weights offloaded to disk, a decoder layer in RAM at a time.")
        return "offload"
    reason = stream.unsupported_reason(source_dir, job.trust_remote_code)
    if job.dtype not in ("auto",):
        reason = reason or f"--dtype {job.dtype} (streaming keeps the checkpoint's dtype)"
    if reason is None:
        return "stream"
    if job.engine == "stream":
        raise QuantizeError(
            f"the streaming engine cannot quantize {job.model_id}: {reason}", "use --engine load (or auto)"
        )
    logger.info("Streaming does not apply (%s); loading the model instead.", reason)
    return "load"
