"""The image's HEALTHCHECK: `python -m quantize.health [--pid PID | --port PORT]` exits 0 when the vLLM server
answers `/health`, 1 when it does not.

With `--port`, that port on 127.0.0.1 is asked; with `--pid`, the server with that process id (its port read from
its command line). Without either, the server is found by its command line among the processes it can see
(`serve` execs vLLM's server module): in a container that is the container's one server, and a container that runs
another command (quantize, smoke, a shell) has no server and reports healthy, there being nothing to check.
Several servers (a host, not a container) are refused rather than guessed between. Standard library only, so a
check costs one small interpreter start.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"  # what `serve` runs (quantize/serve.py)
DEFAULT_PORT = 8000


def servers(proc: Path = Path("/proc")) -> dict[int, int]:
    """The vLLM servers running here: {pid: port}."""
    found = {}
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile
            continue
        if SERVER_MODULE in argv:
            port = argv[argv.index("--port") + 1] if "--port" in argv[:-1] else ""
            found[int(cmdline.parent.name)] = int(port) if port.isdigit() else DEFAULT_PORT
    return found


def server_port(proc: Path = Path("/proc"), pid: int | None = None) -> int | None:
    """The port of the vLLM server `pid` (None when that process is not one), or, without a pid, of the one
    server running here (None when there is none; ValueError naming them when there are several)."""
    found = servers(proc)
    if pid is not None:
        return found.get(pid)
    if len(found) > 1:
        pids = ", ".join(map(str, sorted(found)))
        raise ValueError(f"several vLLM servers run here (pids {pids})")
    return next(iter(found.values()), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.health", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pid", type=int, help="the server's process id (serve --detach prints it)")
    which.add_argument("--port", type=int, help="the server's port on 127.0.0.1")
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        try:
            port = server_port(pid=args.pid)
        except ValueError as exc:
            print(f"error: {exc} (fix: pass --pid or --port)", file=sys.stderr)
            return 1
        if port is None and args.pid is not None:
            print(
                f"error: process {args.pid} is not a vLLM server (fix: the pid serve --detach printed)", file=sys.stderr
            )
            return 1
        if port is None:
            return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"vLLM on port {port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
