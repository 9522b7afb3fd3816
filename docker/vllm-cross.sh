#!/usr/bin/env bash
# Cross-compile the vLLM CPU wheel for aarch64 on an x86_64 Debian bookworm host, at native speed: the same
# pinned, patched, ISA-pinned sources as the native build (docker/vllm-sources.sh), compiled by Debian's
# g++-aarch64-linux-gnu 12.2 (the arm64 image's g++ 12.2) against the target's multiarch :arm64 libraries and
# the target's torch wheel. Run by the Dockerfile's vllm-cross stage (FROM --platform=$BUILDPLATFORM) and by
# `make vllm-wheel ARCH=arm64`.
#
#   docker/vllm-cross.sh packages                 the Debian packages it needs (apt-get install them; root)
#   docker/vllm-cross.sh build DEPS WORK DIST     sources from DEPS (make deps), build in WORK, wheel into DIST
#
# Needs for build: the packages above; PYTHON (default python3) with requirements/vllm-build.txt and the BUILD
# host's torch of the same version (setup.py imports it); TARGET_TORCH_WHEEL, the aarch64 torch wheel the
# wheel is linked against (the +cpu one from the PyTorch CPU index; PyPI's CUDA build links the same libtorch).
# Environment: VLLM_ARM_ISA (neoverse-n1 | bf16-i8mm), ACL (off; on needs a native arm64 build: ACL's own
# build runs without the toolchain), MAX_JOBS, OFFLINE, and the pins (default: the Dockerfile's ARGs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "vllm-cross: error: $*" >&2; exit 1; }
packages=(g++-aarch64-linux-gnu libnuma-dev:arm64 libpython3.11-dev:arm64 ccache patch)

build() {
  local deps=$1 work=$2 dist=$3 python=${PYTHON:-python3}
  [[ ${ACL:-off} == off ]] || die "ACL=${ACL} cannot be cross-compiled (ACL's build ignores the toolchain) (fix: ACL=off, or build natively on arm64)"
  command -v aarch64-linux-gnu-g++ >/dev/null || die "no aarch64-linux-gnu-g++ (fix: apt-get install ${packages[*]}, after dpkg --add-architecture arm64)"
  [[ -f /usr/lib/aarch64-linux-gnu/libnuma.so && -f /usr/include/aarch64-linux-gnu/python3.11/pyconfig.h ]] \
    || die "the target's libnuma-dev:arm64 / libpython3.11-dev:arm64 are missing (fix: apt-get install ${packages[*]})"
  [[ -f ${TARGET_TORCH_WHEEL:-} ]] || die "TARGET_TORCH_WHEEL='${TARGET_TORCH_WHEEL:-}' is not an aarch64 torch wheel (fix: make deps ARCH=arm64)"
  [[ $TARGET_TORCH_WHEEL == *aarch64.whl ]] || die "$TARGET_TORCH_WHEEL is not for aarch64"
  "$python" -c 'import cmake, setuptools_scm, torch' 2>/dev/null \
    || die "$python lacks the build requirements (fix: pip install -r requirements/vllm-build.txt and torch)"

  rm -rf "$work" && mkdir -p "$work" "$dist"
  ARCH=arm64 "$here/vllm-sources.sh" unpack "$deps" "$work/src" >"$work/sources.env"
  # shellcheck disable=SC1091
  . "$work/sources.env"
  "$python" -m zipfile -e "$TARGET_TORCH_WHEEL" "$work/target-torch"
  export VLLM_TARGET_DEVICE=cpu VLLM_CPU_ACL=0 MAX_JOBS=${MAX_JOBS:-2} CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_TOOLCHAIN_FILE=$here/cross/aarch64-linux-gnu.cmake -DTorch_DIR=$here/cross
    -DTORCH_TARGET_ROOT=$work/target-torch -DPython_INCLUDE_DIR=/usr/include/python3.11"
  (cd "$VLLM_SRC" && "$python" "$here/cross/setup_cross.py" bdist_wheel --dist-dir="$dist" \
    --py-limited-api=cp38 --plat-name=linux_aarch64)
  local wheel; wheel=$(find "$dist" -maxdepth 1 -name 'vllm-*linux_aarch64.whl' -newer "$work/sources.env" | head -n 1)
  [[ -n $wheel ]] || die "setup.py wrote no aarch64 wheel into $dist"
  CXX=aarch64-linux-gnu-g++ ARCH=arm64 COMPILE_COMMANDS=$(find "$VLLM_SRC/build" -name compile_commands.json | head -n 1) \
    "$here/vllm-sources.sh" record "$wheel" >"$dist/vllm-build.json"
  cat "$dist/vllm-build.json"
}

case ${1:-} in
  packages) echo "${packages[*]}" ;;
  build) [[ $# == 4 ]] || die "usage: $0 build DEPS WORK DIST"; build "$2" "$3" "$4" ;;
  *) die "usage: $0 packages | build DEPS WORK DIST" ;;
esac
