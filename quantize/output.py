"""Atomic output directories: write into a hidden temporary directory beside the target, rename at the end.

A run that fails, is interrupted (Ctrl-C, SIGTERM) or is killed (SIGKILL, OOM) never leaves anything under
the final name. Temporary directories left by killed runs are named `.<name>.partial-<pid>` and are
removed by the next run once their process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from .errors import QuantizeError

PARTIAL = ".partial-"


def check_target(target: Path, overwrite: bool) -> None:
    """Fail before any work (and without creating anything) if the target exists (without --overwrite)
    or could not be created."""
    if target.exists() and not overwrite:
        raise QuantizeError(
            f"output directory {target} already exists",
            "pass --overwrite to replace it, or choose another --output-dir",
        )
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise QuantizeError(
            f"cannot create the output directory under {ancestor}: it is a file",
            "choose a writable --output-root or --output-dir",
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise QuantizeError(
            f"output directory {ancestor} is not writable", "choose a writable --output-root or --output-dir"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> None:
    for partial in target.parent.glob(f".{target.name}{PARTIAL}*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (docker stop, kill) into SystemExit so cleanup runs."""

    def handler(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool = False, resumable: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes `target` (replacing it only with `overwrite`).

    `resumable`: the partial directory has a fixed name (`.<name>.partial-resume`) and survives failures, so
    a rerun can pick up what a killed run finished (the streaming engine checks what it may reuse)."""
    target = Path(target).absolute()
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    partial = target.parent / f".{target.name}{PARTIAL}{'resume' if resumable else os.getpid()}"
    if not resumable:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(exist_ok=resumable)
    try:
        with _sigterm_as_exit():
            yield partial
            _fsync_tree(partial)
            if target.exists():
                if not overwrite:  # appeared while we worked
                    raise QuantizeError(
                        f"output directory {target} appeared while quantizing", "rerun with --overwrite"
                    )
                old = target.parent / f".{target.name}.old-{os.getpid()}"
                os.rename(target, old)
                os.rename(partial, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(partial, target)
    finally:
        if partial.exists() and not resumable:
            shutil.rmtree(partial, ignore_errors=True)
