"""`python -m quantize MODEL --scheme ... [--method ...]`: the seed's command, and the default one."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import QuantizeError
from ..quantizer import DTYPES
from ..recipe import AWQ_N_GRID, DEFAULT_GROUPSIZE, METHODS, SCHEMES
from .common import given, parser

NAME = "quantize"
HELP = "Quantize a model using INT4 with minmax or mse and dynamic activation quantization."
ENGINES = ("auto", "stream", "offload", "load")


def build(epilog: str = "") -> argparse.ArgumentParser:
    # The first four arguments, their choices and defaults are the seed script's, unchanged.
    p = parser("python -m quantize", HELP, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        choices=list(ENGINES),
        default="auto",
        help="stream: data-free methods tensor by tensor with bounded memory; offload: weights on disk beside the "
        "output, a decoder layer in RAM at a time (any method); load: the seed's way, the whole model in RAM; "
        "auto: offload for calibrated methods, else stream where it applies (all give the same output)",
    )
    _add_calibration(p.add_argument_group("calibration (--method gptq, imatrix or awq-gptq; --recipe)"))
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _add_calibration(calib) -> None:
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


def recipe_of(args: argparse.Namespace):
    """The Recipe the arguments ask for: a recipe file's, or the seed options'."""
    from ..recipe import Recipe

    if args.recipe:
        from .. import recipe_file

        if given(args) & {"method", "groupsize", "awq_grid"}:
            raise QuantizeError(
                "--recipe sets the method, group size and AWQ grid itself", "drop --method, --groupsize and --awq-grid"
            )
        return recipe_file.load(args.recipe, skip_experts=args.skip_experts, extra_ignore=tuple(args.ignore))
    try:
        return Recipe(
            method=args.method,
            scheme=args.scheme,
            groupsize=args.groupsize,
            skip_experts=args.skip_experts,
            extra_ignore=tuple(args.ignore),
            awq_grid=args.awq_grid,
        )
    except ValueError as exc:
        raise QuantizeError(str(exc), "see python -m quantize --help") from exc


def run(args: argparse.Namespace) -> Path:
    from .. import quantizer

    recipe = recipe_of(args)
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
