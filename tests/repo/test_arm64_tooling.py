"""The pieces of `make test-arm64` (tests/arm64/) that can run on any host; the check itself needs aarch64."""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ARM64 = Path(__file__).resolve().parents[1] / "arm64"
pytestmark = pytest.mark.skipif(not ARM64.is_dir(), reason="tests/arm64 is kept out of images (.dockerignore)")


def to_bf16(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bf16(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("transa,transb", [("N", "N"), ("T", "N"), ("N", "T"), ("T", "T")])
def test_sbgemm_shim_matches_numpy(tmp_path, transa, transb):
    """The sbgemm_ preloaded in the emulated environment computes alpha*op(A)@op(B) + beta*C, column-major."""
    lib_path = tmp_path / "libsbgemm.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib_path), str(ARM64 / "sbgemm.c")], check=True)
    lib = ctypes.CDLL(str(lib_path))
    rng = np.random.default_rng(0)
    m, n, k, alpha, beta = 5, 3, 7, 2.0, 0.5
    a, b = to_bf16(rng.standard_normal((m, k))), to_bf16(rng.standard_normal((k, n)))
    c = rng.standard_normal((m, n)).astype(np.float32)
    expected = alpha * from_bf16(a) @ from_bf16(b) + beta * c
    stored_a = np.asfortranarray(a.T if transa == "T" else a)  # what a caller passes for op(A) = A
    stored_b = np.asfortranarray(b.T if transb == "T" else b)
    out = np.asfortranarray(c.copy())

    def ref(value, ctype=ctypes.c_int):
        return ctypes.byref(ctype(value))

    lib.sbgemm_(
        transa.encode(), transb.encode(), ref(m), ref(n), ref(k), ref(alpha, ctypes.c_float),
        stored_a.ctypes.data_as(ctypes.c_void_p), ref(stored_a.shape[0]),
        stored_b.ctypes.data_as(ctypes.c_void_p), ref(stored_b.shape[0]),
        ref(beta, ctypes.c_float), out.ctypes.data_as(ctypes.c_void_p), ref(out.shape[0]),
    )  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_check_refuses_a_non_arm_python():
    if platform.machine() in ("aarch64", "arm64"):
        pytest.skip("only meaningful off arm64")
    result = subprocess.run([sys.executable, str(ARM64 / "check.py")], capture_output=True, text=True)
    assert result.returncode == 2 and "fix: make test-arm64" in result.stderr


def test_the_check_runs_without_pytest():
    """The emulated arm64 environment has the stack but no test tools: check.py and what it imports (tools.faults,
    tests.tiny_models) must not need pytest."""
    code = (
        "import sys; sys.modules['pytest'] = None; sys.argv = ['check.py', '--help']; import runpy; "
        "runpy.run_path('tests/arm64/check.py', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ARM64.parent.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout
