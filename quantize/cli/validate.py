"""`python -m quantize validate DIR`: check a checkpoint against its recipe."""

from __future__ import annotations

import argparse

from .common import checkpoint_parser

NAME = "validate"
SUMMARY = "check a checkpoint against its recipe"
HELP = "Check a checkpoint against its recipe."


def build() -> argparse.ArgumentParser:
    return checkpoint_parser(NAME, HELP, engine=False)


def run(args: argparse.Namespace) -> dict:
    from .. import validate

    return validate.validate(args.directory)
