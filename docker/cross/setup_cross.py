"""Run vLLM's setup.py (in the current directory) as on aarch64, from an x86_64 build host.

vLLM's setup.py asks platform.machine() which extensions to build (x86_64: _C, _C_AVX512, _C_AVX2; aarch64:
_C) and whether to bundle tcmalloc, which it finds through `ldconfig -p`; here the answer is the target's, and
only the target's (AArch64) tcmalloc may be bundled. Compilers and libraries come from CMAKE_ARGS (the toolchain
file beside this one); docker/vllm-cross.sh runs this.
"""

import platform
import runpy
import subprocess
import sys

platform.machine = lambda: "aarch64"
_check_output = subprocess.check_output


def _target_ldconfig(cmd, *args, **kwargs):
    out = _check_output(cmd, *args, **kwargs)
    if list(cmd[:2]) == ["ldconfig", "-p"]:
        out = "\n".join(line for line in out.splitlines() if "AArch64" in line)
    return out


subprocess.check_output = _target_ldconfig
sys.argv[0] = "setup.py"
runpy.run_path("setup.py", run_name="__main__")
