"""`python -m quantize bench DIR [--baseline MODEL]`: vLLM's offline generation speed, side by side."""

from __future__ import annotations

import argparse

from ..errors import QuantizeError
from ..records import BenchReport
from .common import checkpoint_parser, engine_options, same_names, second_model_option

NAME = "bench"
SUMMARY = "vLLM's generation speed, beside a baseline model"
HELP = (
    "vLLM offline generation speed (TTFT, prefill and decode tokens/s) of a checkpoint, and of "
    "a baseline side by side; JSON on stdout, bench-report.md and bench.png in the report directory."
)


def build() -> argparse.ArgumentParser:
    from .. import bench

    p = checkpoint_parser(NAME, HELP, engine=True)
    second_model_option(p, "--baseline", "also measure this model (local directory or Hub id) in the same run")
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


def run(args: argparse.Namespace) -> BenchReport:
    from .. import bench

    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError as exc:
        raise QuantizeError(f"--batch-sizes {args.batch_sizes!r} is not a list of integers", "e.g. 1,8") from exc
    return bench.run(
        **engine_options(args),
        **same_names(args, "baseline", "input_len", "output_len", "repeats", "report_dir"),
        batch_sizes=batch_sizes,
    )
