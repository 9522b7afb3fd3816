"""`python -m quantize smoke DIR`: load a checkpoint in vLLM, check the W4A8 path, generate; exit 1 if the
reference check disagrees."""

from __future__ import annotations

import argparse

from ..errors import QuantizeError
from ..records import SmokeReport
from .common import checkpoint_parser, engine_options, same_names

NAME = "smoke"
SUMMARY = "load a checkpoint in vLLM, check the W4A8 path, generate (--reference: check the numbers)"
HELP = "Load a checkpoint in vLLM on CPU, check the W4A8 path, generate greedily, print JSON."


def build() -> argparse.ArgumentParser:
    p = checkpoint_parser(NAME, HELP, engine=True)
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


def run(args: argparse.Namespace) -> SmokeReport:
    from .. import smoke

    if args.layers_only and args.reference is None:
        raise QuantizeError("--layers-only is a mode of the reference check", "add --reference")
    return smoke.run(
        **engine_options(args),
        **same_names(args, "prompts", "max_tokens", "reference", "layers_only"),
    )


def exit_code(report: SmokeReport) -> int:
    """1 when the reference check ran and disagreed (the report says where)."""
    return 0 if report.get("agreement", {}).get("passed", True) else 1
