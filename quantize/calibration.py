"""Calibration for the calibrated methods: the text's token windows, the dataset `oneshot` reads, and a warning
when the text is too short for GPTQ."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from . import corpus
from .recipe import GPTQ_METHODS, Recipe

logger = logging.getLogger(__name__)

# GPTQ solves, per layer, a least-squares problem over the layer's inputs (an inputs x inputs Hessian). With
# fewer calibration tokens than about ten times a layer's inputs it fits the calibration text rather than the
# model: on SmolLM2-135M (widest layer 1,536 inputs) 1,642 tokens cut the layers' output error 4x on that text
# and 1.2x on other text, 131 k tokens 2x on both (docs/quality.md).
GPTQ_TOKENS_PER_INPUT = 10


def oneshot_arguments(work, model) -> dict:
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


def calibration_windows(job, source_dir: Path, texts: list[str]) -> list[list[int]]:
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
