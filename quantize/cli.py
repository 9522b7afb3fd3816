"""Command line: `python -m quantize MODEL --scheme ... [--method ...]` (the seed's interface), plus
`python -m quantize validate DIR` and `python -m quantize smoke DIR`.

Thin by design: parse, build a library call, map QuantizeError to one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import QuantizeError
from .quantizer import DTYPES
from .recipe import DEFAULT_GROUPSIZE, METHODS, SCHEMES


def quantize_parser() -> argparse.ArgumentParser:
    # The first four arguments, their choices and defaults are the seed script's, unchanged.
    p = argparse.ArgumentParser(
        prog="python -m quantize",
        description="Quantize a model using INT4 with minmax or mse and dynamic activation quantization. "
        "Other commands: 'python -m quantize validate DIR', 'python -m quantize smoke DIR'.",
    )
    p.add_argument("model_id", type=str, help="Model identifier or path")
    p.add_argument("--method", type=str, choices=list(METHODS), default="mse", help="Quantization method")
    p.add_argument("--scheme", type=str, choices=list(SCHEMES), required=True, help="Quantization scheme for weights")
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
        choices=["auto", "stream", "load"],
        default="auto",
        help="stream: quantize tensor by tensor with bounded memory (same output as load); load: the seed's way, "
        "loading the whole model; auto: stream where it applies",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def validate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m quantize validate", description="Check a checkpoint against its recipe."
    )
    p.add_argument("directory")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def smoke_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m quantize smoke",
        description="Load a checkpoint in vLLM on CPU, check the W4A8 path, generate greedily, print JSON.",
    )
    p.add_argument("directory")
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeatable; default: built-in set)")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--eager", action="store_true", help="skip torch.compile (starts faster, runs slower)")
    p.add_argument(
        "--reference",
        nargs="?",
        const="",
        default=None,
        metavar="CHECKPOINT",
        help="also check vLLM's tokens against a PyTorch reference built from this checkpoint's dequantized "
        "weights (or from another CHECKPOINT's); exit 1 if they disagree",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _quantize(argv: list[str]) -> int:
    from . import quantizer
    from .recipe import Recipe

    args = quantize_parser().parse_args(argv)
    _DEBUG[0] = args.debug
    try:
        recipe = Recipe(
            method=args.method,
            scheme=args.scheme,
            groupsize=args.groupsize,
            skip_experts=args.skip_experts,
            extra_ignore=tuple(args.ignore),
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
    )
    quantizer.run(job)
    return 0


def _validate(argv: list[str]) -> int:
    from . import validate

    args = validate_parser().parse_args(argv)
    _DEBUG[0] = args.debug
    report = validate.validate(args.directory)
    print(json.dumps(report, indent=2))
    return 0


def _smoke(argv: list[str]) -> int:
    from . import smoke

    args = smoke_parser().parse_args(argv)
    _DEBUG[0] = args.debug
    report = smoke.run(
        args.directory, prompts=args.prompt, max_tokens=args.max_tokens, reference=args.reference, eager=args.eager
    )
    print(json.dumps(report, indent=2))
    return 0 if report.get("agreement", {}).get("passed", True) else 1


_DEBUG = [False]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = {"validate": _validate, "smoke": _smoke}.get(argv[0] if argv else "")
    try:
        return command(argv[1:]) if command else _quantize(argv)
    except QuantizeError as exc:
        if _DEBUG[0]:
            raise
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (no output was written under the final name)", file=sys.stderr)
        return 130
