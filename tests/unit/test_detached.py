"""`detached.stop`: a server's whole process group ends, by SIGTERM when it listens and SIGKILL when it does not."""

from __future__ import annotations

import subprocess
import sys

from quantize import detached

# a leader and a child of its own, both in a new process group, as `serve --detach` starts vLLM
GROUP = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "


def start_group(ignore_term: bool) -> subprocess.Popen:
    # SIG_IGN survives exec, so with ignore_term neither the leader nor its child can be stopped by SIGTERM
    ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    process = subprocess.Popen(
        [sys.executable, "-c", ignore + GROUP + "print(flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    process.stdout.readline()  # the child has been started
    return process


def test_a_group_that_obeys_sigterm_is_stopped_by_it():
    process = start_group(ignore_term=False)
    assert detached.stop(process.pid, grace=60, process=process) == "SIGTERM"
    assert process.poll() is not None
    assert not detached._group_alive(process.pid)  # the child too, not only the leader


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace():
    process = start_group(ignore_term=True)
    assert detached.stop(process.pid, grace=1, process=process) == "SIGKILL"
    assert process.returncode == -9
    assert not detached._group_alive(process.pid)


def test_stopping_a_group_that_has_gone_does_nothing():
    process = start_group(ignore_term=False)
    detached.stop(process.pid, process=process)
    assert detached.stop(process.pid) is None
