#!/usr/bin/env bash
# make test-arm64: the headline path (tiny DeepSeek-V2, W4A8, vLLM's Arm MoE and linear kernels) on arm64.
#   - on an arm64 host: natively, in .venv (make venv), e.g. on GitHub's ubuntu-24.04-arm runners;
#   - on an x86_64 host: inside the QEMU-emulated Debian arm64 environment of tests/arm64/emulated.sh
#     (root needed; the first run prepares it in about 5 minutes, cached in $ARM64_CACHE after that), on the
#     CPU ARM64_CPU names (QEMU's -cpu; default max,sve=off, neoverse-n1 for Graviton2 / Ampere Altra).
# Not part of .ci/run: under emulation the check itself takes about 45 minutes (docs/testing.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
t0=$SECONDS
case $(uname -m) in
  aarch64 | arm64)  # the CPU is the host's; ARM64_VLLM_WHEEL replaces the locked vLLM in .venv
    make -C "$repo" venv ${ARM64_VLLM_WHEEL:+VLLM_WHEEL="$ARM64_VLLM_WHEEL"}
    (cd "$repo" && .venv/bin/python tests/arm64/check.py "$@")
    ;;
  x86_64)
    "$repo/tests/arm64/emulated.sh" prepare
    echo "test-arm64: environment ready after $((SECONDS - t0)) s" >&2
    "$repo/tests/arm64/emulated.sh" run python3 /src/tests/arm64/check.py --work /scratch "$@"
    ;;
  *) echo "test-arm64: error: unsupported host $(uname -m) (fix: run on arm64 or x86_64)" >&2; exit 2 ;;
esac
echo "test-arm64: $((SECONDS - t0)) s in all" >&2
