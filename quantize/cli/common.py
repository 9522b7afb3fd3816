"""What every command shares: the checkpoint arguments, options told given from defaulted, the run loop.

A command module names itself (`NAME`, `SUMMARY`, `HELP`), builds its parser (`build`), turns parsed arguments
into one library call (`run`) and may say from its result whether the command failed (`exit_code`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from ..errors import QuantizeError
from ..quantizer import DTYPES

GIVEN = "_given"  # the namespace attribute holding the dests of options the command line set


class _Tracked:
    """Mixin for argparse actions: record that the command line set this option (a default never calls it;
    positional arguments, always given, are not recorded)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, GIVEN, None) is None:
            setattr(namespace, GIVEN, set())
        if option_string is not None:
            getattr(namespace, GIVEN).add(self.dest)
        super().__call__(parser, namespace, values, option_string)


_TRACKED = {
    name: type(f"Given{cls.__name__}", (_Tracked, cls), {})
    for name, cls in {
        None: argparse._StoreAction,
        "store": argparse._StoreAction,
        "store_true": argparse._StoreTrueAction,
        "store_false": argparse._StoreFalseAction,
        "append": argparse._AppendAction,
    }.items()
}


def parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """An ArgumentParser whose every option, once given, is listed by `given(args)`."""
    p = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    for name, cls in _TRACKED.items():
        p.register("action", name, cls)
    return p


def given(args: argparse.Namespace) -> set[str]:
    """The options the user wrote (whatever their value), as opposed to those left at their default."""
    return set(getattr(args, GIVEN, None) or ())


def checkpoint_parser(command: str, description: str, *, engine: bool) -> argparse.ArgumentParser:
    """The arguments every command that reads a checkpoint DIR shares."""
    p = parser(f"python -m quantize {command}", description)
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


def engine_options(args: argparse.Namespace) -> dict:
    """The vLLM engine's options of a checkpoint command, as the library's keyword arguments."""
    return {"directory": args.directory, "dtype": args.dtype, "eager": args.eager}


def same_names(args: argparse.Namespace, *names: str) -> dict:
    """The options the library call spells as the parser does, each named once: `names` is the explicit list
    (renamed or converted values are passed by hand), so a rename on either side fails at this call."""
    return {name: getattr(args, name) for name in names}


def second_model_option(p: argparse.ArgumentParser, flag: str, help: str, **kwargs) -> None:
    """eval's --source and bench's --baseline: the other model of a comparison, also accepted as --reference,
    the name both had until 2026-12 (kept for scripts)."""
    p.add_argument(flag, "--reference", dest=flag.removeprefix("--"), help=help, **kwargs)


class _Stderr(logging.Handler):
    """Each record as a plain line on whatever `sys.stderr` is at the time (tests running `main` swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def log_to_stderr() -> None:
    """This package's progress and warnings on stderr; other libraries' logging stays as Python leaves it."""
    logger = logging.getLogger("quantize")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)


def run(command, args: argparse.Namespace) -> int:
    """Run a command module and print its result alone on stdout: the output directory, or the JSON report.
    While it runs, whatever it or a library prints goes to stderr (llmcompressor logs to stdout). The module's
    `exit_code` says whether its report failed; a QuantizeError becomes one line on stderr and its exit code (a
    traceback with --debug)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = command.run(args)
        print(result if isinstance(result, Path) else json.dumps(result, indent=2))
        return getattr(command, "exit_code", lambda _: 0)(result)
    except QuantizeError as exc:
        if args.debug:
            raise
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (no output was written under the final name)", file=sys.stderr)
        return 130
