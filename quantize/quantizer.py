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
import hashlib
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import card, contract, corpus, hashing, host, manifest, output, shapes, source, source_check, stream
from .errors import QuantizeError, warn
from .recipe import GPTQ_METHODS, Recipe

logger = logging.getLogger(__name__)

DTYPES = ("auto", "bfloat16", "float16", "float32")
DTYPE_BYTES = {"auto": 0, "bfloat16": 2, "float16": 2, "float32": 4}  # 0: the checkpoint's own
# GPTQ solves, per layer, a least-squares problem over the layer's inputs (an inputs x inputs Hessian). With
# fewer calibration tokens than about ten times a layer's inputs it fits the calibration text rather than the
# model: on SmolLM2-135M (widest layer 1,536 inputs) 1,642 tokens cut the layers' output error 4x on that text
# and 1.2x on other text, 131 k tokens 2x on both (docs/quality.md).
GPTQ_TOKENS_PER_INPUT = 10


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
    arguments: dict  # the manifest's `arguments`; the engines add what they learn (calibration, shard counts)
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


def _torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


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
            _load(work, offload_dir)
    else:
        _load(work)
    return target


def prepare(job: Job, target: Path, timer: manifest.Timer) -> tuple[source.Source, str, list | None]:
    """Every check that needs no weights, then the download: returns the local source, the engine to use and,
    for calibrated methods, the calibration text's token windows (checked before any weight is read)."""
    output.check_target(target, job.overwrite)
    source.check_trust_remote_code(job.model_id, job.revision, job.trust_remote_code)
    with timer("check"):
        src = source.resolve(job.model_id, job.revision, config_only=True, trust_remote_code=job.trust_remote_code)
        output.check_apart(target, src.path)
        config = source.read_config(src, job.trust_remote_code)
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
    windows = calibration_windows(job, src.path, texts) if texts is not None else None
    engine = choose_engine(job, src.path)
    needed = stream.estimate_output_bytes(src.path, job.recipe, DTYPE_BYTES[job.dtype], job.trust_remote_code)
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


def _load(work: _Work, offload_dir: Path | None = None) -> None:
    """The seed's way: load the model, run llmcompressor's `oneshot` on it, save what it returns. With `offload_dir`,
    the weights wait there on disk (the offload engine) and llmcompressor's sequential pipeline onloads one
    decoder layer at a time while it calibrates."""
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.utils.pytorch_helpers import is_moe_model
    from transformers import AutoTokenizer

    job = work.job
    where = ", offloaded to disk" if offload_dir else ""
    logger.info("Loading model '%s' (dtype %s%s)...", job.model_id, job.dtype, where)
    with work.timer("load"):
        model = _from_pretrained(work, offload_dir)
        tokenizer = (
            AutoTokenizer.from_pretrained(work.src.path, trust_remote_code=job.trust_remote_code)
            if source.has_tokenizer(work.src.path)
            else None
        )
    work.architecture, work.moe = type(model).__name__, is_moe_model(model)
    calibration = _calibration(work, model) if job.recipe.calibrated else {}
    trim = _release_memory_per_layer(model) if offload_dir else contextlib.nullcontext()
    with work.output() as partial, work.timer("quantize"), torch.no_grad(), _no_pinning_without_accelerator(), trim:
        model = oneshot(
            model=model,
            recipe=job.recipe.modifiers(work.architecture, work.moe),
            tokenizer=tokenizer,
            trust_remote_code_model=job.trust_remote_code,
            **calibration,
        )
        # saved here rather than by oneshot, whose 20 GB shards would hold the whole compressed model in RAM
        # (an offloaded model is onloaded a shard at a time): Job.shard_bytes (512 MiB), as the streaming engine writes
        model.save_pretrained(str(partial), save_compressed=True, max_shard_size=job.shard_bytes)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(partial))
        if job.recipe.file:  # what the file's modifiers wrote, before it gets the final name
            check_servable(job.recipe, partial)


def _from_pretrained(work: _Work, offload_dir: Path | None):
    """The model in RAM, or (offload_dir) with every weight in compressed-tensors' disk cache: transformers and
    accelerate write them there (`max_memory` 0 for the CPU) and llmcompressor onloads them as it needs them."""
    from transformers import AutoModelForCausalLM

    job = work.job
    kwargs = {"dtype": _torch_dtype(job.dtype), "trust_remote_code": job.trust_remote_code}
    if offload_dir is None:
        return AutoModelForCausalLM.from_pretrained(work.src.path, **kwargs)
    from compressed_tensors.offload import load_offloaded_model

    with load_offloaded_model():
        return AutoModelForCausalLM.from_pretrained(
            work.src.path, device_map="auto_offload", max_memory={"cpu": 0}, offload_folder=str(offload_dir), **kwargs
        )


def check_servable(recipe: Recipe, partial: Path) -> None:
    """A recipe file's checkpoint, refused (and never renamed into place) if vLLM could not serve it: the file's
    scheme was checked before loading, but transforms (online rotations) show only in the config written."""
    from . import checkpoint

    if problem := contract.config_problem(checkpoint.quantization_config(partial)):
        raise QuantizeError(
            f"{recipe.option} wrote a checkpoint vLLM cannot serve: {problem}",
            "remove what the message names from the recipe",
        )


@contextlib.contextmanager
def _release_memory_per_layer(model) -> Iterator[None]:
    """On the offload engine, hand freed memory back to the OS (host.release_freed_memory) as each decoder layer
    (the sequential pipeline's unit: the model's `_no_split_modules`) first runs: by then the previous layer's
    onloaded weights and calibration state are freed, and glibc would otherwise keep them."""
    host.release_freed_memory()  # what loading and llmcompressor's MoE linearizing left in the heap
    layers = set(getattr(model, "_no_split_modules", None) or ())
    seen: set[int] = set()

    def release(module, _args) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            host.release_freed_memory()

    hooks = [m.register_forward_pre_hook(release) for m in model.modules() if type(m).__name__ in layers]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def _no_pinning_without_accelerator() -> Iterator[None]:
    """AWQ pins its cached activations (`IntermediatesCache.pin_memory`) to speed host-to-device copies; without an
    accelerator `Tensor.pin_memory()` raises ("Cannot access accelerator device when none is available") and a
    CPU run makes no such copies. So, on CPU only, pinning is a no-op for the duration of `oneshot`."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original


def _calibration(work: _Work, model) -> dict:
    """`oneshot`'s calibration arguments, recorded in the manifest's arguments, with a warning when the text is
    too short for the model's widest layer."""
    job = work.job
    with work.timer("calibration data"):
        dataset = calibration_dataset(work.windows)
    tokens = sum(map(len, dataset["input_ids"]))
    work.arguments["calibration"] = {"source": job.calibration, "samples": len(dataset), "tokens": tokens,
                                     "seq_len": job.calibration_seq_len}  # fmt: skip
    logger.info("Calibrating on %d windows (%d tokens) of %s", len(dataset), tokens, job.calibration)
    if job.recipe.method in GPTQ_METHODS and (warning := calibration_warning(tokens, widest_input(model, job.recipe))):
        logger.warning(warning)
    return {"dataset": dataset, "num_calibration_samples": len(dataset), "max_seq_length": job.calibration_seq_len,
            "shuffle_calibration_samples": False}  # fmt: skip


def calibration_windows(job: Job, source_dir: Path, texts: list[str]) -> list[list[int]]:
    """The calibration text's token windows, with the source's tokenizer; an error if they do not fill one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source_dir, trust_remote_code=job.trust_remote_code)
    return corpus.calibration_windows(
        tokenizer, texts, job.calibration_seq_len, job.calibration_samples, job.calibration
    )


def calibration_dataset(windows: list[list[int]]):
    """Token windows as a `datasets.Dataset` (llmcompressor skips its own tokenization then).

    Built with a fingerprint of its own, the sha256 of the token windows: `Dataset.from_dict` would have datasets
    hash the table with dill, which fails on some hosts (Debian's Python 3.11.2 on aarch64, under `make
    test-arm64`: "Can't pickle <class 'MonthDayNano'>")."""
    from datasets import Dataset, DatasetInfo, Features
    from datasets.table import InMemoryTable

    table = InMemoryTable.from_pydict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})
    info = DatasetInfo(features=Features.from_arrow_schema(table.schema))
    return Dataset(table, info=info, fingerprint=hashlib.sha256(json.dumps(windows).encode()).hexdigest()[:32])


def widest_input(model, recipe: Recipe) -> int:
    """The most inputs of any Linear layer the recipe quantizes (router gates and lm_head are ignored)."""
    import torch
    from compressed_tensors.utils import match_named_modules

    linears = match_named_modules(model, ["Linear"], ignore=recipe.ignore)
    return max((m.in_features for _, m in linears if isinstance(m, torch.nn.Linear)), default=0)


def calibration_warning(tokens: int, widest: int) -> str | None:
    """A warning when `tokens` is too little calibration text for layers with `widest` inputs, else None."""
    needed = GPTQ_TOKENS_PER_INPUT * widest
    if tokens >= needed:
        return None
    return (
        f"Warning: {tokens:,} calibration tokens for layers with up to {widest:,} inputs: GPTQ will fit this text "
        f"and may do no better than rounding on other text; give --calibration at least {needed:,} tokens "
        f"(and --calibration-samples to match), e.g. `make wikipedia` then --calibration models/wikipedia.jsonl"
    )


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
