"""Command line: `python -m quantize MODEL --scheme ... [--method ...]` (the seed's interface), plus
`python -m quantize COMMAND DIR` for the commands below, one module each.

Thin by design: each module parses, makes one library call and says from the result whether it failed;
`common.run` maps a QuantizeError to one line and a non-zero exit. The result alone goes to stdout (the output
directory of `quantize`, the JSON report of the others); progress, warnings and errors go to stderr.
"""

from __future__ import annotations

import sys

from . import bench, evaluate, publish, quantize, serve, smoke, validate
from .common import log_to_stderr, run

# the commands that take a checkpoint DIR; anything else is the seed's `MODEL --scheme ...`
COMMANDS = {m.NAME: m for m in (validate, smoke, evaluate, bench, serve, publish)}


def quantize_parser():
    """The seed's parser, its help listing every other command."""
    width = max(map(len, COMMANDS))  # each command's SUMMARY, one line
    listing = "\n".join(f"  {name:<{width}}  {m.SUMMARY}" for name, m in COMMANDS.items())
    return quantize.build(
        epilog=f"other commands (python -m quantize COMMAND --help):\n{listing}\n\n"
        "installed as a package, `vllm-arm-int4` is the same as `python -m quantize`."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None:
        command, parser = quantize, quantize_parser()
    else:
        argv, parser = argv[1:], command.build()
    if getattr(command, "PASSES_UNKNOWN", False):
        args, args.vllm_args = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    log_to_stderr()
    return run(command, args)
