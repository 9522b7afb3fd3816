"""`serve --detach`: vLLM's server in the background, owned until the model has answered a first completion.

The server gets its own process group and a pid file beside its log (`<log>.pid`, what `make serve-stop` stops).
If the wait ends any way but an answer (vLLM exits, an HTTP error, the timeout, Ctrl-C, SIGTERM or SIGHUP), the
server is stopped and the pid file removed; only SIGKILL, which no process can catch, leaves them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import QuantizeError

LOG_PREFIX = re.compile(r"^\(\w+ pid=\d+\) [A-Z]+ [\d-]+ [\d:]+ \[[^\]]+\] ")  # "(Worker pid=49) ERROR 11-28 ..."
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")
STOP_GRACE_S = 30  # how long a stopped server gets to exit before SIGKILL


def _request(url: str, key: str | None, body: dict | None = None, timeout: float = 60) -> int:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def _last_error(log_path: Path) -> str:
    """The root cause vLLM logged: the last exception line that is not the engine's "see root cause above"
    wrapper, without vLLM's log prefix (with pydantic's detail line when the message is only a heading)."""
    lines = [LOG_PREFIX.sub("", ln).strip() for ln in log_path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    raised = [i for i, ln in enumerate(lines) if EXCEPTION_LINE.match(ln) and "root cause above" not in ln]
    if not raised:
        return lines[-1][:400] if lines else "(nothing logged)"
    i = raised[-1]
    detail = lines[i + 1] if i + 1 < len(lines) and len(lines[i]) < 100 else ""
    return f"{lines[i]} {detail}".strip()[:400]


def wait_ready(
    process: subprocess.Popen, base: str, model: str, key: str | None, timeout: float, log_path: Path
) -> tuple[float, float]:
    """Seconds until /health answers and until a first one-token completion does; raises if vLLM exits first
    (with its last error line), answers with an error, or the time runs out."""
    t0, healthy = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        if process.poll() is not None:
            raise QuantizeError(
                f"vLLM exited with code {process.returncode} before answering: {_last_error(log_path)}",
                f"read {log_path}",
                exit_code=1,
            )
        if healthy is None and _request(f"{base}/health", None, timeout=5) == 200:
            healthy = time.monotonic() - t0
        if healthy is not None:
            status = _request(f"{base}/v1/completions", key, {"model": model, "prompt": "Hello", "max_tokens": 1})
            if status == 200:
                return healthy, time.monotonic() - t0
            if status not in (0, 503):
                raise QuantizeError(f"the server answered a first completion with HTTP {status}", f"read {log_path}")
        time.sleep(1)
    raise QuantizeError(
        f"vLLM did not answer within {timeout:.0f} s (stopped it)", f"raise --ready-timeout; read {log_path}"
    )


def stop(pid: int, grace: float = STOP_GRACE_S, process: subprocess.Popen | None = None) -> str | None:
    """Stop a detached server and whatever it started (its process group `pid`): SIGTERM, then SIGKILL to what is
    left after `grace` seconds (a vLLM API server whose engine died can ignore SIGTERM). `process`, when the server
    is this process's child, is reaped as it exits. Returns the signal that emptied the group, or None if it had
    already gone."""
    if not _group_alive(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()  # a child that has exited stays a zombie, and in the group, until reaped
        if not _group_alive(pid):
            return "SIGTERM"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if process is not None:
        process.wait()
    return "SIGKILL"


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs: zombies, which hold no memory or port, do not count (an
    orphaned server's are reaped by whatever adopted it, which may be slow to, e.g. a container's first process)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state not in "ZX":
                return True
    return False


class _Signalled(Exception):
    """SIGTERM or SIGHUP arrived while `serve --detach` waited for its server."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, frame) -> None:
    raise _Signalled(signum)


@contextlib.contextmanager
def _owned(process: subprocess.Popen, pid_file: Path):
    """While the body runs, `process` belongs to it: any way out but a normal return (an error, Ctrl-C, SIGTERM,
    SIGHUP) stops the server's process group, waits for it to exit and removes its pid file."""
    main_thread = threading.current_thread() is threading.main_thread()  # where Python runs signal handlers
    signals = (signal.SIGTERM, signal.SIGHUP) if main_thread else ()
    handlers = {sig: signal.signal(sig, _raise_signalled) for sig in signals}
    try:
        yield
    except (_Signalled, KeyboardInterrupt) as exc:
        _stop_and_forget(process, pid_file)
        signum = exc.signum if isinstance(exc, _Signalled) else signal.SIGINT
        raise QuantizeError(
            f"{signal.Signals(signum).name} while waiting for the server: stopped it (pid {process.pid})",
            "run serve --detach again",
            exit_code=128 + signum,
        ) from None
    except BaseException:
        _stop_and_forget(process, pid_file)
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _stop_and_forget(process: subprocess.Popen, pid_file: Path) -> None:
    """Stop the server's process group (`stop`), reap it, remove its pid file."""
    stop(process.pid, process=process)
    process.wait()
    pid_file.unlink(missing_ok=True)


def start(argv: list[str], env: dict, log_path: Path, host: str, port: int, name: str, key: str | None,
          ready_timeout: float) -> dict:  # fmt: skip
    """Start the server `argv` in the background, logging to `log_path`; return once it has answered, with where
    it listens, its pid and how long it took."""
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file = log_path.with_suffix(".pid")  # what `make serve-stop` stops (the process group)
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{client_host}:{port}"
    with _owned(process, pid_file):
        pid_file.write_text(f"{process.pid}\n")
        health_s, answer_s = wait_ready(process, base, name, key, ready_timeout, log_path)
    return {
        "url": f"{base}/v1",
        "model": name,
        "pid": process.pid,
        "log": str(log_path),
        "pid_file": str(pid_file),
        "seconds_to_health": round(health_s, 1),
        "seconds_to_first_answer": round(answer_s, 1),
    }
