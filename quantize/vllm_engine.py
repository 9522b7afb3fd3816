"""Starting vLLM on a checkpoint, the same way for `smoke`, `eval` and `bench`.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so the loaded model can be inspected
with `llm.apply_model`, and vLLM's logs go to stderr so that stdout carries only a command's JSON report.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path

from . import checkpoint, host, records
from .errors import QuantizeError

logger = logging.getLogger(__name__)

MAX_LOGPROBS = 20  # vLLM's default max_logprobs: the most log-probs per position smoke and eval ask for


def _engine_env() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM otherwise reserves a large share of RAM
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # keep the model in-process for describe_layers
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries only the JSON report


def resolve_dtype(directory: Path, requested: str = "auto") -> records.VllmDtype:
    """The dtype vLLM runs the checkpoint in on this CPU (host.vllm_dtype): {"requested", "dtype"} and, when the
    CPU decided, "reason", which also goes to stderr in one line. A request this CPU cannot run is refused here,
    before vLLM starts."""
    from .manifest import vllm_wheel

    groups = (checkpoint.read_config(directory).get("quantization_config") or {}).get("config_groups", {})
    channelwise = any((g.get("weights") or {}).get("strategy") == "channel" for g in groups.values())
    try:
        dtype, reason = host.vllm_dtype(
            requested, bf16=host.has_bf16(), channelwise=channelwise, bf16_build=host.bf16_builds(vllm_wheel())
        )
    except ValueError as exc:
        raise QuantizeError(f"--dtype {requested}: {exc}", "--dtype float32 (what --dtype auto runs here)") from exc
    if reason:
        logger.warning("note: %s (--dtype %s)", reason, dtype)
    return {"requested": requested, "dtype": dtype} | ({"reason": reason} if reason else {})


def load(directory: Path, max_model_len: int = 512, eager: bool = False, dtype: str = "auto", **engine_args):
    """Start vLLM on the checkpoint in `dtype` (resolve_dtype's); returns (llm, seconds). `eager` skips
    torch.compile (faster start)."""
    _engine_env()
    from vllm import LLM

    config = checkpoint.read_config(directory)
    t0 = time.perf_counter()
    llm = LLM(
        model=str(directory),
        max_model_len=min(max_model_len, config.get("max_position_embeddings", max_model_len)),
        seed=0,
        enforce_eager=eager,
        dtype=dtype,
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
