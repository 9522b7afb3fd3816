"""`python -m quantize serve DIR`: vLLM's OpenAI-compatible server with CPU defaults; unknown options go to vLLM."""

from __future__ import annotations

import argparse

from .common import checkpoint_parser, engine_options, same_names

NAME = "serve"
SUMMARY = "vLLM's OpenAI-compatible server with CPU defaults (--detach: in the background)"
HELP = (
    "vLLM's OpenAI-compatible server on a checkpoint, with CPU defaults. Options this command does not know "
    "are passed to vLLM (e.g. --chat-template FILE). The API key comes from VLLM_API_KEY, --api-key-file or "
    "VLLM_API_KEY_FILE, never from the command line (docs/serving.md)."
)
PASSES_UNKNOWN = True  # what this command does not know is vLLM's


def build() -> argparse.ArgumentParser:
    from .. import serve

    p = checkpoint_parser(NAME, HELP, engine=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=serve.DEFAULT_PORT, help="port (default %(default)s)")
    p.add_argument(
        "--max-model-len",
        type=int,
        help=f"context length (default: the model's, at most {serve.DEFAULT_MAX_MODEL_LEN})",
    )
    p.add_argument(
        "--kv-cache-gib",
        type=float,
        help=f"KV cache size, VLLM_CPU_KVCACHE_SPACE (default: that variable, else {serve.DEFAULT_KV_CACHE_GIB})",
    )
    p.add_argument(
        "--threads-bind",
        help="OpenMP thread binding, VLLM_CPU_OMP_THREADS_BIND: auto, nobind or CPU lists like 0-31 "
        "(default: that variable, else auto)",
    )
    p.add_argument("--api-key-file", help="file holding the API key (or set VLLM_API_KEY / VLLM_API_KEY_FILE)")
    p.add_argument(
        "--allow-no-api-key",
        action="store_true",
        help="serve a --host other than loopback without an API key (refused otherwise): for networks you control",
    )
    p.add_argument("--served-model-name", help="the model name clients send (default: the directory's name)")
    p.add_argument("--no-tcmalloc", dest="tcmalloc", action="store_false", help="do not preload tcmalloc")
    p.add_argument(
        "--detach",
        action="store_true",
        help="start the server in the background, return once the model has answered a first request; print "
        "its URL, pid and log as JSON",
    )
    p.add_argument("--log", help="with --detach: the server's log (default: serve-<name>.log beside DIR)")
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=serve.DEFAULT_READY_TIMEOUT,
        help="with --detach: seconds to wait for the first answer (default %(default)s)",
    )
    return p


# Every option but the engine's, under the name serve.run gives it.
PASSED = ("host", "port", "max_model_len", "kv_cache_gib", "threads_bind", "api_key_file", "allow_no_api_key",
          "served_model_name", "tcmalloc", "detach", "log", "ready_timeout", "vllm_args")  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    from .. import serve

    return serve.run(
        **engine_options(args),
        **same_names(args, *PASSED),
    )
