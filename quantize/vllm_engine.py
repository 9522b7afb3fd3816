"""Starting vLLM on a checkpoint, the same way for `smoke`, `eval` and `bench`.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so the loaded model can be inspected
with `llm.apply_model`, and vLLM's logs go to stderr so that stdout carries only a command's JSON report.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from . import checkpoint


def _engine_env() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM otherwise reserves a large share of RAM
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # keep the model in-process for describe_layers
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries only the JSON report


def load(directory: Path, max_model_len: int = 512, eager: bool = False, **engine_args):
    """Start vLLM on the checkpoint; returns (llm, seconds). `eager` skips torch.compile (faster start)."""
    _engine_env()
    from vllm import LLM

    config = checkpoint.read_config(directory)
    t0 = time.perf_counter()
    llm = LLM(
        model=str(directory),
        max_model_len=min(max_model_len, config.get("max_position_embeddings", max_model_len)),
        seed=0,
        enforce_eager=eager,
        **engine_args,
    )
    return llm, time.perf_counter() - t0


def close(llm) -> None:
    """Shut the in-process engine down so a second model can be loaded in the same process."""
    engine = getattr(llm, "llm_engine", None)
    if engine is not None and hasattr(engine, "engine_core"):
        engine.engine_core.shutdown()
    del llm
    gc.collect()
