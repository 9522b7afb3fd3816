"""Command line: `python -m quantize MODEL --scheme ... [--method ...]` (the seed's interface), plus
`python -m quantize validate|smoke|eval|bench|serve|publish DIR`.

Thin by design: parse, build a library call, map QuantizeError to one line and a non-zero exit. The result
alone goes to stdout (the output directory of `quantize`, the JSON report of the others); progress, warnings
and errors go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from .errors import QuantizeError
from .quantizer import DTYPES
from .recipe import AWQ_N_GRID, DEFAULT_GROUPSIZE, METHODS, SCHEMES


def quantize_parser() -> argparse.ArgumentParser:
    # The first four arguments, their choices and defaults are the seed script's, unchanged.
    p = argparse.ArgumentParser(
        prog="python -m quantize",
        description="Quantize a model using INT4 with minmax or mse and dynamic activation quantization. "
        "Other commands: 'python -m quantize {validate,smoke,eval,bench,serve,publish} DIR --help'.",
    )
    p.add_argument("model_id", type=str, help="Model identifier or path")
    p.add_argument("--method", type=str, choices=list(METHODS), default="mse", help="Quantization method")
    # --scheme is required, as in the seed, unless a recipe file (--recipe) brings its own
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--scheme", type=str, choices=list(SCHEMES), help="Quantization scheme for weights")
    chosen.add_argument(
        "--recipe",
        metavar="FILE.yaml",
        help="an llmcompressor recipe instead of --method/--scheme/--groupsize: refused unless it writes the W4A8 "
        "scheme vLLM serves; the output is named after the file (recipes/ has examples)",
    )
    p.add_argument("--groupsize", type=int, default=DEFAULT_GROUPSIZE, help="Group size for groupwise quantization")
    p.add_argument("--output-dir", help="exact output directory (default: <output-root>/<seed's name>)")
    p.add_argument("--output-root", help="directory to create the seed-named output in (default: .)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--revision", help="Hub branch, tag or commit to download (recorded in the manifest)")
    p.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="auto",
        help="load dtype; 'auto' keeps the checkpoint's (bf16 for DeepSeek-V2-Lite); float32 is the seed's upcast",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATTERN",
        help="extra module name or 're:<regex>' to leave unquantized (repeatable)",
    )
    p.add_argument(
        "--skip-experts",
        action="store_true",
        help="leave routed MoE experts unquantized (needed to serve MoE checkpoints on x86_64)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the repository's own modelling code (Hub models also need --revision)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "stream", "offload", "load"],
        default="auto",
        help="stream: data-free methods tensor by tensor with bounded memory; offload: weights on disk beside the "
        "output, a decoder layer in RAM at a time (any method); load: the seed's way, the whole model in RAM; "
        "auto: offload for calibrated methods, else stream where it applies (all give the same output)",
    )
    calib = p.add_argument_group("calibration (--method gptq, imatrix or awq-gptq; --recipe)")
    calib.add_argument(
        "--calibration",
        default="builtin:calibration",
        metavar="SOURCE",
        help="calibration text: a .txt or .jsonl ('text' field) file, hub:NAME[:CONFIG][@SPLIT], or "
        "builtin:calibration (default; about 1,600 tokens shipped with the package, works offline)",
    )
    calib.add_argument("--calibration-samples", type=int, default=128, help="at most N windows (default 128)")
    calib.add_argument("--calibration-seq-len", type=int, default=512, help="tokens per window (default 512)")
    calib.add_argument(
        "--awq-grid",
        type=int,
        default=AWQ_N_GRID,
        metavar="N",
        help=f"awq-gptq: points of AWQ's scale search, each a forward pass per layer (default {AWQ_N_GRID}; "
        "docs/quality.md has what more buys)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _checkpoint_parser(command: str, description: str, *, engine: bool) -> argparse.ArgumentParser:
    """The arguments every subcommand that reads a checkpoint DIR shares."""
    p = argparse.ArgumentParser(prog=f"python -m quantize {command}", description=description)
    p.add_argument("directory")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    if engine:
        p.add_argument("--eager", action="store_true", help="skip torch.compile (starts faster, runs slower)")
        p.add_argument(
            "--dtype",
            choices=list(DTYPES),
            default="auto",
            help="what vLLM computes in; auto: vLLM's choice (bfloat16), float32 on CPUs without bf16 "
            "(Graviton2, Ampere Altra)",
        )
    return p


def validate_parser() -> argparse.ArgumentParser:
    return _checkpoint_parser("validate", "Check a checkpoint against its recipe.", engine=False)


def smoke_parser() -> argparse.ArgumentParser:
    p = _checkpoint_parser(
        "smoke",
        "Load a checkpoint in vLLM on CPU, check the W4A8 path, generate greedily, print JSON.",
        engine=True,
    )
    p.add_argument(
        "--prompt",
        dest="prompts",
        metavar="PROMPT",
        action="append",
        default=None,
        help="prompt (repeatable; default: built-in set)",
    )
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument(
        "--reference",
        nargs="?",
        const="",
        default=None,
        metavar="CHECKPOINT",
        help="also check vLLM against a PyTorch reference built from this checkpoint's dequantized weights "
        "(or from another CHECKPOINT's): each W4A8 Linear, and next-token log-probs end to end; exit 1 if they "
        "disagree (docs/smoke-check.md)",
    )
    p.add_argument(
        "--layers-only",
        action="store_true",
        help="with --reference: check each W4A8 Linear only, skipping the end-to-end comparison, whose float32 "
        "reference needs RAM for the whole model in float32 (about 4 bytes per parameter: 63 GB for "
        "DeepSeek-V2-Lite)",
    )
    return p


def eval_parser() -> argparse.ArgumentParser:
    from .evaluate import DEFAULT_CORPUS, DEFAULT_SEQ_LEN, DEFAULT_TOP_K

    p = _checkpoint_parser(
        "eval",
        "Perplexity, top-1 agreement and KL divergence of a quantized checkpoint against its source, "
        "both scored by vLLM; JSON on stdout, eval-report.md and a manifest entry in DIR.",
        engine=True,
    )
    p.add_argument("--reference", required=True, help="the unquantized model: local directory or Hub id")
    p.add_argument("--revision", help="Hub revision of --reference")
    p.add_argument(
        "--corpus",
        dest="corpus_spec",
        metavar="CORPUS",
        default=DEFAULT_CORPUS,
        help="text to score: a .txt or .jsonl ('text' field) file, or hub:NAME[:CONFIG][@SPLIT] "
        f"(default {DEFAULT_CORPUS})",
    )
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="tokens per scored window")
    p.add_argument("--max-windows", type=int, help="score only the first N windows")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="log-probs per position for agreement and KL")
    p.add_argument(
        "--max-ppl-increase",
        type=float,
        metavar="PCT",
        help="exit 1 when the perplexity increase over the reference exceeds PCT percent",
    )
    return p


def bench_parser() -> argparse.ArgumentParser:
    from . import bench

    p = _checkpoint_parser(
        "bench",
        "vLLM offline generation speed (TTFT, prefill and decode tokens/s) of a checkpoint, and of "
        "its reference side by side; JSON on stdout, bench-report.md and bench.png in the report directory.",
        engine=True,
    )
    p.add_argument("--reference", help="also measure this model (local directory or Hub id) in the same run")
    p.add_argument("--input-len", type=int, default=bench.DEFAULT_INPUT_LEN, help="prompt tokens")
    p.add_argument("--output-len", type=int, default=bench.DEFAULT_OUTPUT_LEN, help="generated tokens")
    p.add_argument(
        "--batch-sizes",
        default=",".join(map(str, bench.DEFAULT_BATCH_SIZES)),
        help="comma-separated batch sizes (default %(default)s)",
    )
    p.add_argument("--repeats", type=int, default=bench.DEFAULT_REPEATS, help="runs per figure (median)")
    p.add_argument("--report-dir", help="where to write bench-report.md and bench.png (default: DIR)")
    return p


def serve_parser() -> argparse.ArgumentParser:
    from . import serve

    p = _checkpoint_parser(
        "serve",
        "vLLM's OpenAI-compatible server on a checkpoint, with CPU defaults. Options this command does not know "
        "are passed to vLLM (e.g. --chat-template FILE). The API key comes from VLLM_API_KEY, --api-key-file or "
        "VLLM_API_KEY_FILE, never from the command line (docs/serving.md).",
        engine=True,
    )
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


def publish_parser() -> argparse.ArgumentParser:
    p = _checkpoint_parser(
        "publish",
        "Upload a checkpoint that validates to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`, "
        "never printed); print the repository's URL.",
        engine=False,
    )
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; contact nothing")
    return p


def _quantize(args: argparse.Namespace) -> Path:
    from . import quantizer
    from .recipe import Recipe

    if args.recipe:
        from . import recipe_file

        if args.method != "mse" or args.groupsize != DEFAULT_GROUPSIZE or args.awq_grid != AWQ_N_GRID:
            raise QuantizeError(
                "--recipe sets the method, group size and AWQ grid itself", "drop --method, --groupsize and --awq-grid"
            )
        recipe = recipe_file.load(args.recipe, skip_experts=args.skip_experts, extra_ignore=tuple(args.ignore))
    else:
        try:
            recipe = Recipe(
                method=args.method,
                scheme=args.scheme,
                groupsize=args.groupsize,
                skip_experts=args.skip_experts,
                extra_ignore=tuple(args.ignore),
                awq_grid=args.awq_grid,
            )
        except ValueError as exc:
            raise QuantizeError(str(exc), "see python -m quantize --help") from exc
    job = quantizer.Job(
        model_id=args.model_id,
        recipe=recipe,
        output_dir=quantizer.output_path(args.model_id, recipe, args.output_dir, args.output_root),
        revision=args.revision,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        engine=args.engine,
        calibration=args.calibration,
        calibration_samples=args.calibration_samples,
        calibration_seq_len=args.calibration_seq_len,
    )
    return quantizer.run(job)


def _options(args: argparse.Namespace) -> dict:
    """A subcommand's arguments as keyword arguments of its library call: the parsers name each option after
    the parameter it fills."""
    return {name: value for name, value in vars(args).items() if name != "debug"}


def _validate(args: argparse.Namespace) -> dict:
    from . import validate

    return validate.validate(**_options(args))


def _smoke(args: argparse.Namespace) -> dict:
    from . import smoke

    if args.layers_only and args.reference is None:
        raise QuantizeError("--layers-only is a mode of the reference check", "add --reference")
    return smoke.run(**_options(args))


def _eval(args: argparse.Namespace) -> dict:
    from . import evaluate

    return evaluate.run(**_options(args))


def _bench(args: argparse.Namespace) -> dict:
    from . import bench

    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError as exc:
        raise QuantizeError(f"--batch-sizes {args.batch_sizes!r} is not a list of integers", "e.g. 1,8") from exc
    return bench.run(**_options(args))


def _serve(args: argparse.Namespace) -> dict:
    from . import serve

    return serve.run(**_options(args))


def _publish(args: argparse.Namespace) -> dict:
    from . import publish

    return publish.run(**_options(args))


SUBCOMMANDS = {
    "validate": (validate_parser, _validate),
    "smoke": (smoke_parser, _smoke),
    "eval": (eval_parser, _eval),
    "bench": (bench_parser, _bench),
    "serve": (serve_parser, _serve),
    "publish": (publish_parser, _publish),
}


def _exit_code(result: Path | dict) -> int:
    """0, unless a report's own check failed: smoke's reference check (exit 1, the report says where), or eval's
    --max-ppl-increase gate (exit 1 with an error line)."""
    if not isinstance(result, dict):
        return 0
    gate = result.get("gate")
    if gate and not gate["passed"]:
        raise QuantizeError(
            f"perplexity increase {result['metrics']['perplexity_increase_pct']}% exceeds "
            f"--max-ppl-increase {gate['max_ppl_increase_pct']}%",
            "try --method gptq or --scheme groupwise, or raise the limit",
            exit_code=1,
        )
    return 0 if result.get("agreement", {}).get("passed", True) else 1


class _Stderr(logging.Handler):
    """Each record as a plain line on whatever `sys.stderr` is at the time (tests running `main` swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _log_to_stderr() -> None:
    """This package's progress and warnings on stderr; other libraries' logging stays as Python leaves it."""
    logger = logging.getLogger(__package__)
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)


def _run(command, args: argparse.Namespace) -> int:
    """Run a command and print its result alone on stdout: the output directory, or the JSON report. While it
    runs, whatever it or a library prints goes to stderr (llmcompressor logs to stdout). A QuantizeError becomes
    one line on stderr and its exit code (a traceback with --debug)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = command(args)
        print(result if isinstance(result, Path) else json.dumps(result, indent=2))
        return _exit_code(result)
    except QuantizeError as exc:
        if args.debug:
            raise
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (no output was written under the final name)", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    subcommand = SUBCOMMANDS.get(argv[0]) if argv else None
    make_parser, command = subcommand or (quantize_parser, _quantize)
    parser = make_parser()
    if command is _serve:  # what `serve` does not know is vLLM's
        args, args.vllm_args = parser.parse_known_args(argv[1:])
    else:
        args = parser.parse_args(argv[1:] if subcommand else argv)
    _log_to_stderr()
    return _run(command, args)
