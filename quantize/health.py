"""The image's HEALTHCHECK: `python -m quantize.health` exits 0 when the vLLM server in this container answers
`/health`, 1 when it does not.

The server is found by its command line among the container's processes (`serve` execs vLLM's server module),
its port read from there. A container that runs another command (quantize, smoke, a shell) has no server and
reports healthy: there is nothing to check. Standard library only, so a check costs one small interpreter start.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"  # what `serve` runs (quantize/serve.py)
DEFAULT_PORT = 8000


def server_port(proc: Path = Path("/proc")) -> int | None:
    """The port of the vLLM server running here, or None when there is none."""
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile
            continue
        if SERVER_MODULE in argv:
            return int(argv[argv.index("--port") + 1]) if "--port" in argv[:-1] else DEFAULT_PORT
    return None


def main() -> int:
    port = server_port()
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
