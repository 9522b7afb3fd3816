#!/usr/bin/env python3
"""Consistency check of an installed stack (install-stack.sh step 8; also `make check-stack`).

1. `pip check` may report exactly the known, accepted conflicts and nothing else:
   - vLLM's compressed-tensors==0.17.0 pin, overridden with 0.19.0 (requirements/overrides.txt);
   - vLLM's requirement on torchvision / torchaudio / torchcodec, removed on purpose (their PyPI builds
     do not match torch+cpu).
2. Every package pinned in the lock, quantization.txt and torch.txt is installed at exactly that version.
3. The stack imports: torch, transformers, compressed_tensors, llmcompressor, vllm.
Exits non-zero with every offending line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REQ = Path(__file__).resolve().parent.parent / "requirements"
ALLOWED = [
    re.compile(
        r"^vllm(-cpu)? \S+ has requirement compressed-tensors==0\.17\.0, "
        r"but you have compressed-tensors 0\.19\.0\.$"
    ),
    re.compile(r"^vllm(-cpu)? \S+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$"),
]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(*files: Path) -> dict[str, str]:
    out = {}
    for f in files:
        for line in f.read_text().splitlines():
            if m := PIN.match(line):
                out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def unexpected_pip_check(python: str) -> list[str]:
    result = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip() and not ln.startswith("No broken requirements")]
    return [ln for ln in lines if not any(p.match(ln) for p in ALLOWED)]


def version_drift(expected: dict[str, str]) -> list[str]:
    problems = []
    for name, want in sorted(expected.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={want} is not installed")
            continue
        if have != want:
            problems.append(f"{name} is {have}, the lock says {want}")
    return problems


def import_failures() -> list[str]:
    failures = []
    for module in ("torch", "transformers", "compressed_tensors", "llmcompressor", "vllm"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        if result.returncode:
            last = (result.stderr.strip().splitlines() or ["?"])[-1]
            failures.append(f"import {module} failed: {last}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=REQ / f"lock-linux-{__import__('platform').machine()}.txt")
    parser.add_argument("--no-import", action="store_true", help="skip the import check")
    args = parser.parse_args(argv)

    expected = pins(args.lock, REQ / "quantization.txt", REQ / "torch.txt")
    problems = [f"pip check: {ln}" for ln in unexpected_pip_check(sys.executable)]
    problems += version_drift(expected)
    if not args.no_import:
        problems += import_failures()
    if problems:
        print("check-stack: the installed stack is inconsistent:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print("check-stack: fix: rerun scripts/install-stack.sh in a fresh environment (make venv)", file=sys.stderr)
        return 1
    print(
        f"check-stack: ok ({len(expected)} pinned packages at their locked versions; "
        "pip check shows only the accepted compressed-tensors override and removed torch add-ons)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
