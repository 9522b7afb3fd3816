"""Atomic output directories: write into a hidden temporary directory beside the target, rename at the end.

A run that fails, is interrupted (Ctrl-C, SIGTERM) or is killed (SIGKILL, OOM) never leaves anything under
the final name. Temporary directories left by killed runs are named `.<name>.partial-<pid>` and are
removed by the next run once their process is gone. A run is refused up front when the filesystem lacks the room
for the output, and a disk that fills up anyway ends as a one-line error like any other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from .errors import QuantizeError, SourceError, disk_full

PARTIAL = ".partial-"
NO_ROOM_FIX = "free space there, or choose --output-root/--output-dir on a filesystem with more room"


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def partial_path(target: Path, resumable: bool = False) -> Path:
    """Where a run writes before the rename: fixed for a resumable run, per process otherwise."""
    return target.parent / f".{target.name}{PARTIAL}{'resume' if resumable else os.getpid()}"


@contextlib.contextmanager
def scratch_directory(target: Path, purpose: str) -> Iterator[Path]:
    """A directory beside `target` for a run's temporary files (the offload engine's weights), removed when the
    run ends, however it ends; named like a partial directory, so a killed run's is removed by the next run."""
    scratch = target.parent / f".{target.name}{PARTIAL}{purpose}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with _sigterm_as_exit():
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_target(target: Path, overwrite: bool) -> None:
    """Fail before any work (and without creating anything) if the target exists (without --overwrite)
    or could not be created."""
    if target.exists() and not overwrite:
        raise QuantizeError(
            f"output directory {target} already exists",
            "pass --overwrite to replace it, or choose another --output-dir",
        )
    ancestor = _existing_ancestor(target.parent)
    if not ancestor.is_dir():
        raise QuantizeError(
            f"cannot create the output directory under {ancestor}: it is a file",
            "choose a writable --output-root or --output-dir",
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise QuantizeError(
            f"output directory {ancestor} is not writable", "choose a writable --output-root or --output-dir"
        )


def check_apart(target: Path, source: Path) -> None:
    """The output must not be the source directory, nor hold it: --overwrite would delete the source."""
    resolved = target.resolve()
    if resolved == source or resolved in source.parents:
        raise QuantizeError(
            f"the output directory {target} is or holds the source model {source}, which --overwrite would delete",
            "choose an --output-dir outside the source model",
        )


def check_free_space(target: Path, needed: int, resumable: bool = False) -> None:
    """Fail before any work if the output's filesystem has less than `needed` bytes free. What a resumable
    partial directory already holds counts as free: the run reuses or replaces it."""
    ancestor = _existing_ancestor(target.parent)
    free = shutil.disk_usage(ancestor).free
    partial = partial_path(target, resumable)
    reusable = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file()) if resumable else 0
    if free + reusable < needed:
        held = f" (and {human_size(reusable)} in {partial.name}, which this run reuses)" if reusable else ""
        raise QuantizeError(
            f"the output needs about {human_size(needed)} but the filesystem of {ancestor} has "
            f"{human_size(free)} free{held}",
            NO_ROOM_FIX,
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


def _usual_modes(directory: Path) -> None:
    """Give every file the mode a newly created file gets (0666 less the umask). safetensors 0.8 writes its files
    0600, and a checkpoint only its writer can read cannot be served by a container's user or another account."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)


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
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]  # removed again on failure
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    partial = partial_path(target, resumable)
    if not resumable:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(exist_ok=resumable)
    try:
        with _sigterm_as_exit():
            yield partial
            _usual_modes(partial)
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
    except SourceError:
        shutil.rmtree(partial, ignore_errors=True)  # even a resumable run's: its source must change first
        raise
    except Exception as exc:
        if not disk_full(exc):
            raise
        kept = f"; the shards finished so far are kept in {partial.name} for a rerun to resume" if resumable else ""
        raise QuantizeError(f"the filesystem ran out of space while writing {target}{kept}", NO_ROOM_FIX) from exc
    finally:
        if partial.exists() and not resumable:
            shutil.rmtree(partial, ignore_errors=True)
        if not target.exists():
            _remove_empty(created)


def _remove_empty(directories: list[Path]) -> None:
    """Remove the directories a failed run created for its output, deepest first, if they are still empty."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()
