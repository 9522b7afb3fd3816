"""Atomic output: nothing under the final name unless the run finished; existing outputs are never clobbered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from quantize.errors import QuantizeError
from quantize.output import atomic_directory


def test_success_renames_into_place(tmp_path):
    target = tmp_path / "out" / "model-w4a8dyn"
    with atomic_directory(target) as partial:
        assert partial.parent == target.parent and partial != target
        (partial / "a.txt").write_text("x")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "x"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-w4a8dyn"]


def test_files_get_the_usual_mode(tmp_path):
    """safetensors writes 0600; a checkpoint must be readable by whoever serves it (e.g. the image's user)."""
    import torch
    from safetensors.torch import save_file

    umask = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as partial:
            save_file({"w": torch.zeros(2)}, str(partial / "model.safetensors"))
            (partial / "sub").mkdir()
            (partial / "sub" / "a.txt").write_text("x")
            os.chmod(partial / "sub" / "a.txt", 0o600)
    finally:
        os.umask(umask)
    for name in ("model.safetensors", "sub/a.txt"):
        assert oct((tmp_path / "out" / name).stat().st_mode & 0o777) == oct(0o644), name


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "model-w4a8dyn"
    with pytest.raises(RuntimeError), atomic_directory(target) as partial:
        (partial / "half.safetensors").write_bytes(b"\0" * 10)
        raise RuntimeError("quantization blew up")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_and_untouched(tmp_path):
    target = tmp_path / "model-w4a8dyn"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(QuantizeError) as info, atomic_directory(target):
        pass
    assert info.value.format() == (
        f"error: output directory {target} already exists "
        "(fix: pass --overwrite to replace it, or choose another --output-dir)"
    )
    assert (target / "keep.txt").read_text() == "old"


def test_overwrite_replaces_only_at_the_end(tmp_path):
    target = tmp_path / "model-w4a8dyn"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target, overwrite=True) as partial:
        assert (target / "old.txt").exists()  # the old output survives until the new one is complete
        (partial / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-w4a8dyn"]


def test_failed_overwrite_keeps_the_old_output(tmp_path):
    target = tmp_path / "model-w4a8dyn"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True):
        raise RuntimeError
    assert (target / "old.txt").read_text() == "old"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_nothing_under_the_final_name(tmp_path, sig):
    target = tmp_path / "model-w4a8dyn"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from quantize.output import atomic_directory
        with atomic_directory(Path({str(target)!r})) as partial:
            (partial / "model.safetensors").write_bytes(b"\\0" * 1000)
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    if sig == signal.SIGTERM:
        assert leftovers == []  # cleaned up by the handler
    else:
        assert leftovers == [f".model-w4a8dyn.partial-{proc.pid}"]  # SIGKILL cannot be caught...
        with atomic_directory(target) as partial:  # ...so the next run removes it
            (partial / "ok").write_text("ok")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model-w4a8dyn"]


def test_partial_of_a_live_process_is_left_alone(tmp_path):
    target = tmp_path / "model-w4a8dyn"
    live = tmp_path / f".model-w4a8dyn.partial-{os.getppid()}"
    live.mkdir()
    with atomic_directory(target):
        time.sleep(0)
    assert live.exists()


def test_unwritable_parent_is_refused_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(QuantizeError) as info, atomic_directory(blocker / "sub" / "model"):
        pytest.fail("must not start")
    assert info.value.format() == (
        f"error: cannot create the output directory under {blocker}: it is a file "
        "(fix: choose a writable --output-root or --output-dir)"
    )
