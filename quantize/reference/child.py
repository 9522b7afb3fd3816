"""The end-to-end check in a fresh Python process, started after vLLM has released the model: JSON on stdin
and stdout (`python -m quantize.reference CHECKPOINT`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..errors import QuantizeError
from .logprobs import DEFAULT_TOLERANCE, compare


def compare_in_child(directory: Path, sequences: list[dict], tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """`compare` in a fresh Python process (see the module docstring)."""
    payload = json.dumps({"tolerance": tolerance, "sequences": sequences})
    result = subprocess.run(
        [sys.executable, "-m", "quantize.reference", str(directory)],
        input=payload,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        last = [ln for ln in result.stderr.splitlines() if ln.strip()][-1:] or [f"exit {result.returncode}"]
        raise QuantizeError(
            f"the PyTorch reference of {directory} failed: {last[0]}",
            "check that the reference is a W4A8 checkpoint of the same model (python -m quantize validate)",
            exit_code=1,
        )
    return json.loads(result.stdout)


def main() -> int:
    request = json.load(sys.stdin)
    print(json.dumps(compare(Path(sys.argv[1]), request["sequences"], request["tolerance"])))
    return 0
