#!/usr/bin/env bash
# Container entrypoint: refuse CPUs the image was not built for, preload tcmalloc, then run
# `python -m quantize ARGS` (or ARGS itself when it is a command such as bash, python, pytest or vllm).
set -euo pipefail

isa=$(cat /etc/vllm-arm-int4-isa 2>/dev/null || echo neoverse-n1)
if [[ $(uname -m) == aarch64 && $isa == bf16-i8mm ]]; then
  features=$(grep -m1 -i '^Features' /proc/cpuinfo || true)
  for flag in bf16 i8mm; do
    if [[ " $features " != *" $flag "* ]]; then
      echo "error: this image was built with VLLM_ARM_ISA=bf16-i8mm, but this CPU has no '$flag'" \
           "(Graviton2, Ampere Altra) (fix: rebuild with --build-arg VLLM_ARM_ISA=neoverse-n1, i.e. make image)" >&2
      exit 3
    fi
  done
fi

tcmalloc=/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4
if [[ -f $tcmalloc ]]; then
  export LD_PRELOAD="${tcmalloc}${LD_PRELOAD:+:$LD_PRELOAD}"
fi

case "${1:-}" in
  bash|sh|python|python3|pytest|pip|vllm) exec "$@" ;;
  *) exec python -m quantize "$@" ;;
esac
