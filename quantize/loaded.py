"""The load and offload engines: the model built by transformers (in RAM, or with every weight waiting on disk),
llmcompressor's `oneshot` run on it, the result saved in 512 MiB shards.

`work` is the quantizer's run under way (`quantizer._Work`): the job, the local source, the partial output and
the manifest's arguments.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from . import checkpoint, contract, host, source
from .calibration import oneshot_arguments
from .errors import QuantizeError
from .recipe import Recipe

logger = logging.getLogger(__name__)


def torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def run(work, offload_dir: Path | None = None) -> None:
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
        model = from_pretrained(work, offload_dir)
        tokenizer = (
            AutoTokenizer.from_pretrained(work.src.path, trust_remote_code=job.trust_remote_code)
            if source.has_tokenizer(work.src.path)
            else None
        )
    work.architecture, work.moe = type(model).__name__, is_moe_model(model)
    calibration = oneshot_arguments(work, model) if job.recipe.calibrated else {}
    trim = release_memory_per_layer(model) if offload_dir else contextlib.nullcontext()
    with work.output() as partial, work.timer("quantize"), torch.no_grad(), no_pinning_without_accelerator(), trim:
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


def from_pretrained(work, offload_dir: Path | None):
    """The model in RAM, or (offload_dir) with every weight in compressed-tensors' disk cache: transformers and
    accelerate write them there (`max_memory` 0 for the CPU) and llmcompressor onloads them as it needs them."""
    from transformers import AutoModelForCausalLM

    job = work.job
    kwargs = {"dtype": torch_dtype(job.dtype), "trust_remote_code": job.trust_remote_code}
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
    if problem := contract.config_problem(checkpoint.quantization_config(partial)):
        raise QuantizeError(
            f"{recipe.option} wrote a checkpoint vLLM cannot serve: {problem}",
            "remove what the message names from the recipe",
        )


@contextlib.contextmanager
def release_memory_per_layer(model) -> Iterator[None]:
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
def no_pinning_without_accelerator() -> Iterator[None]:
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
