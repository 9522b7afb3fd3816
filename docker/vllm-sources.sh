#!/usr/bin/env bash
# The source inputs of the vLLM CPU build, each pinned by sha256 in the Dockerfile's ARGs:
#   vllm-<VLLM_VERSION>.tar.gz          PyPI sdist                      VLLM_SDIST_SHA256
#   oneDNN-<ONEDNN_REF_<ARCH>>.tar      `git archive` of oneDNN         ONEDNN_SHA256_AMD64 / ONEDNN_SHA256_ARM64
#   ComputeLibrary-<ACL_VERSION>.tar    `git archive` of ACL (arm64)    ACL_SHA256
#   wheels/                             the build requirements (requirements/vllm-build.txt, hashed)
# and torch+cpu into the repository's wheels/ (WHEELS), where the Dockerfile's stages look for it.
#
#   docker/vllm-sources.sh fetch DEPS            (make deps) put every input for ARCH into DEPS; needs PyPI, and
#                                                GitHub or local git mirrors (ONEDNN_GIT, ACL_GIT) for the archives
#   docker/vllm-sources.sh unpack DEPS WORKDIR   (Dockerfile) check the inputs in DEPS, unpack them into WORKDIR,
#                                                patch the sdist (vllm-<version>-cpu.patch beside this script),
#                                                pin the Arm ISA, and print the build's environment (to source)
#   docker/vllm-sources.sh record WHEEL          (Dockerfile) what WHEEL was built from, as JSON
# The Arm ISA (VLLM_ARM_ISA): upstream's cmake reads the BUILD host's /proc/cpuinfo, so a wheel built on
# Graviton3/4 would SIGILL on Graviton2/Altra; neoverse-n1 turns that detection off (-march=armv8.2-a+dotprod+fp16),
# bf16-i8mm asks for both (+bf16+i8mm: Graviton3/4, AmpereOne only). amd64 has runtime dispatch: no ISA to pin.
# An input missing from DEPS is left to upstream's download (cmake's FetchContent, pip), unless OFFLINE=1: then
# the build fails naming the file, and cmake may fetch nothing (FETCHCONTENT_FULLY_DISCONNECTED).
# Environment: ARCH (amd64 | arm64; default this machine's), ACL (off: fetch no ACL, for the cross build),
# OFFLINE, TORCH_INDEX_URL, ONEDNN_GIT, ACL_GIT, PIP,
# VLLM_PATCH, the pins and VLLM_ARM_ISA (default: the Dockerfile's ARGs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "vllm-sources: error: $*" >&2; exit 1; }

# Pins: from the environment (the Dockerfile passes its ARGs), else from the Dockerfile beside this script.
dockerfile=${DOCKERFILE:-$here/../Dockerfile}
pin() {
  local name=$1
  if [[ -n ${!name+set} ]]; then printf '%s' "${!name}"
  elif [[ -f $dockerfile ]]; then sed -n "s/^ARG $name=//p" "$dockerfile" | head -n 1
  fi
}
ARCH=${ARCH:-$(dpkg --print-architecture 2>/dev/null || uname -m)}
case $ARCH in
  amd64 | x86_64) ARCH=amd64 ;;
  arm64 | aarch64) ARCH=arm64 ;;
  *) die "ARCH=$ARCH is not amd64 or arm64" ;;
esac
VLLM_VERSION=$(pin VLLM_VERSION)
VLLM_SDIST_URL=$(pin VLLM_SDIST_URL)
VLLM_SDIST_SHA256=$(pin VLLM_SDIST_SHA256)
ONEDNN_REF=$(pin "ONEDNN_REF_${ARCH^^}")
ONEDNN_SHA256=$(pin "ONEDNN_SHA256_${ARCH^^}")
ACL_VERSION=$(pin ACL_VERSION)
ACL_SHA256=$(pin ACL_SHA256)
VLLM_ARM_ISA=$(pin VLLM_ARM_ISA)
VLLM_PATCH=${VLLM_PATCH:-$here/vllm-$VLLM_VERSION-cpu.patch}
sdist=vllm-$VLLM_VERSION.tar.gz
onednn=oneDNN-$ONEDNN_REF.tar
acl=ComputeLibrary-$ACL_VERSION.tar

# check FILE SHA256 PIN_NAME: the file's sha256 must be the pin; the message names the file and the fix.
check() {
  local file=$1 want=$2 name=$3 got
  [[ -n $want ]] || die "$file has no pinned sha256 (fix: set ARG $name in the Dockerfile to the sha256 of a copy you trust)"
  got=$(sha256sum "$file" | cut -d' ' -f1)
  [[ $got == "$want" ]] || die "$file has sha256 $got, expected $want ($name) (fix: delete it and run make deps)"
}

# archive REPO_URL MIRROR_GIT REF PREFIX OUT: `git archive` of REF (tar, uncompressed: gzip bytes vary).
archive() {
  local url=$1 mirror=$2 ref=$3 prefix=$4 out=$5 git_dir
  if [[ -n $mirror ]]; then
    git_dir=$mirror
  else
    git_dir=$(mktemp -d)/repo.git
    git clone -q --bare --filter=blob:none "$url" "$git_dir"
  fi
  git --git-dir="$git_dir" archive --format=tar --prefix="$prefix/" "$ref" >"$out.partial"
  mv "$out.partial" "$out"
}

fetch() {
  local deps=$1
  mkdir -p "$deps/wheels"
  if [[ ! -f $deps/$sdist ]]; then
    echo "==> $sdist"
    curl -fsSL -o "$deps/$sdist.partial" "$VLLM_SDIST_URL" && mv "$deps/$sdist.partial" "$deps/$sdist"
  fi
  check "$deps/$sdist" "$VLLM_SDIST_SHA256" VLLM_SDIST_SHA256
  if [[ ! -f $deps/$onednn ]]; then
    echo "==> $onednn"
    archive https://github.com/uxlfoundation/oneDNN.git "${ONEDNN_GIT:-}" "$ONEDNN_REF" oneDNN "$deps/$onednn"
  fi
  check "$deps/$onednn" "$ONEDNN_SHA256" "ONEDNN_SHA256_${ARCH^^}"
  local acl_wanted=; [[ $ARCH == arm64 && ${ACL:-on} != off ]] && acl_wanted=1  # ACL=off: the cross build's deps
  if [[ -n $acl_wanted && ! -f $deps/$acl ]]; then
    echo "==> $acl"
    archive https://github.com/ARM-software/ComputeLibrary.git "${ACL_GIT:-}" "$ACL_VERSION" ComputeLibrary "$deps/$acl"
    [[ -n $ACL_SHA256 ]] || echo "vllm-sources: $acl is not pinned yet: its sha256 is $(sha256sum "$deps/$acl" | cut -d' ' -f1) (set ARG ACL_SHA256)" >&2
  fi
  [[ -z $acl_wanted ]] || check "$deps/$acl" "$ACL_SHA256" ACL_SHA256
  echo "==> wheels/ (build requirements for $ARCH, CPython 3.11)"
  local platform=x86_64; [[ $ARCH == arm64 ]] && platform=aarch64
  "${PIP[@]}" download -q --no-deps --require-hashes --only-binary=:all: --python-version 3.11 \
    --platform "manylinux_2_28_$platform" --platform "manylinux_2_17_$platform" --platform "manylinux2014_$platform" \
    --platform any -d "$deps/wheels" -r "$here/../requirements/vllm-build.txt"
  local wheels=${WHEELS:-$here/../wheels} torch; torch=$(pin TORCH_VERSION)
  echo "==> torch $torch into $wheels (${TORCH_INDEX_URL:-the index pip is configured with})"
  "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.11 --platform "manylinux_2_28_$platform" \
    --platform "linux_$platform" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} -d "$wheels" "torch==$torch"
  echo "deps ready in $deps ($ARCH)"
}

unpack() {
  local deps=$1 work=$2
  mkdir -p "$work"
  if [[ -f $deps/$sdist ]]; then
    check "$deps/$sdist" "$VLLM_SDIST_SHA256" VLLM_SDIST_SHA256
    cp "$deps/$sdist" "$work/$sdist"
  elif [[ ${OFFLINE:-} == 1 ]]; then
    die "deps/$sdist is missing and OFFLINE=1 (fix: make deps on a machine with network, then build again)"
  else
    curl -fsSL -o "$work/$sdist" "$VLLM_SDIST_URL"
    check "$work/$sdist" "$VLLM_SDIST_SHA256" VLLM_SDIST_SHA256
  fi
  tar -xzf "$work/$sdist" -C "$work" && rm "$work/$sdist"

  local cmake_args=()
  if [[ -f $deps/$onednn ]]; then
    check "$deps/$onednn" "$ONEDNN_SHA256" "ONEDNN_SHA256_${ARCH^^}"
    tar -xf "$deps/$onednn" -C "$work"
    echo "export FETCHCONTENT_SOURCE_DIR_ONEDNN=$work/oneDNN"
  elif [[ ${OFFLINE:-} == 1 ]]; then
    die "deps/$onednn is missing and OFFLINE=1 (fix: make deps on a machine with network, then build again)"
  else
    echo "export ONEDNN_SHA256_USED=upstream-fetch-unchecked"
  fi
  if [[ $ARCH == arm64 ]]; then
    if [[ -f $deps/$acl ]]; then
      check "$deps/$acl" "$ACL_SHA256" ACL_SHA256
      tar -xf "$deps/$acl" -C "$work"  # ACL builds inside its source tree: it must be writable
      echo "export ACL_ROOT_DIR=$work/ComputeLibrary"
    elif [[ ${OFFLINE:-} == 1 ]]; then
      die "deps/$acl is missing and OFFLINE=1 (fix: make deps on a machine that reaches GitHub, then build again)"
    else
      echo "export ACL_SHA256_USED=upstream-fetch-unchecked"
    fi
  fi
  if [[ -d $deps/wheels ]] && compgen -G "$deps/wheels/*.whl" >/dev/null; then
    echo "export PIP_NO_INDEX=1 PIP_FIND_LINKS=$deps/wheels"
  elif [[ ${OFFLINE:-} == 1 ]]; then
    die "deps/wheels/ has no build requirements and OFFLINE=1 (fix: make deps, then build again)"
  fi
  if [[ ${OFFLINE:-} == 1 ]]; then cmake_args+=(-DFETCHCONTENT_FULLY_DISCONNECTED=ON); fi
  echo "export CMAKE_ARGS='${cmake_args[*]}'"

  local src=$work/vllm-$VLLM_VERSION cmake=$work/vllm-$VLLM_VERSION/cmake/cpu_extension.cmake
  [[ -f $VLLM_PATCH ]] || die "no $VLLM_PATCH for vLLM $VLLM_VERSION (fix: port the patch to this version)"
  patch -d "$src" -p1 -s <"$VLLM_PATCH" >&2
  case $ARCH/$VLLM_ARM_ISA in
    arm64/neoverse-n1 | amd64/neoverse-n1)  # (amd64: the default ISA name, ignored)
      # shellcheck disable=SC2016  # ${CPUINFO} is cmake's, matched literally
      sed -i -e 's/find_isa(${CPUINFO} "bf16" ARM_BF16_FOUND)/set(ARM_BF16_FOUND OFF)/' \
             -e 's/find_isa(${CPUINFO} "i8mm" ARM_I8MM_FOUND)/set(ARM_I8MM_FOUND OFF)/' "$cmake"
      grep -q 'set(ARM_I8MM_FOUND OFF)' "$cmake" \
        || die "cmake/cpu_extension.cmake changed upstream: the ISA pin no longer applies (fix: update docker/vllm-sources.sh)" ;;
    arm64/bf16-i8mm) echo "export VLLM_CPU_ARM_BF16=1 VLLM_CPU_ARM_I8MM=1" ;;
    amd64/*) die "VLLM_ARM_ISA=$VLLM_ARM_ISA is an Arm ISA; amd64 builds take none (fix: drop it)" ;;
    *) die "VLLM_ARM_ISA must be neoverse-n1 or bf16-i8mm, got '$VLLM_ARM_ISA'" ;;
  esac
  echo "export VLLM_SRC=$src"
}

# march COMPILE_COMMANDS: the -march flags vLLM's own sources (csrc/) were compiled with, as a JSON list.
march() {
  python3 -c 'import json, re, sys
flags = {f for e in json.load(open(sys.argv[1])) if "/csrc/" in e["file"]
         for f in re.findall(r"-march=\S+", e.get("command") or " ".join(e["arguments"]))}
print(json.dumps(sorted(flags)))' "$1"
}

# record WHEEL: what the wheel was built from, as JSON (the image keeps it; quantize's manifest copies it).
# CXX names the compiler (default g++); COMPILE_COMMANDS, cmake's compile_commands.json, adds the -march flags.
record() {
  local wheel=$1 onednn_sha=${ONEDNN_SHA256_USED:-$ONEDNN_SHA256} acl_fields="" march_field=""
  if [[ $ARCH == arm64 && ${VLLM_CPU_ACL:-} == 0 ]]; then
    acl_fields=", \"acl\": \"off\", \"arm_isa\": \"$VLLM_ARM_ISA\""
  elif [[ $ARCH == arm64 ]]; then
    acl_fields=", \"acl\": \"$ACL_VERSION\", \"acl_sha256\": \"${ACL_SHA256_USED:-$ACL_SHA256}\", \"arm_isa\": \"$VLLM_ARM_ISA\""
  fi
  [[ -f ${COMPILE_COMMANDS:-} ]] && march_field=", \"march\": $(march "$COMPILE_COMMANDS")"
  printf '{"source": "built from source", "arch": "%s", "vllm_version": "%s", "sdist_sha256": "%s", "patch_sha256": "%s", "onednn": "%s", "onednn_sha256": "%s"%s, "compiler": "%s"%s, "offline": %s, "wheel": "%s", "wheel_sha256": "%s"}\n' \
    "$ARCH" "$VLLM_VERSION" "$VLLM_SDIST_SHA256" "$(sha256sum "$VLLM_PATCH" | cut -d' ' -f1)" \
    "$ONEDNN_REF" "$onednn_sha" "$acl_fields" "$("${CXX:-g++}" --version | head -n 1)" "$march_field" \
    "$([[ ${OFFLINE:-} == 1 ]] && echo true || echo false)" "$(basename "$wheel")" "$(sha256sum "$wheel" | cut -d' ' -f1)"
}

read -r -a PIP <<<"${PIP:-python3 -m pip}"
case ${1:-} in
  fetch) [[ $# == 2 ]] || die "usage: $0 fetch DEPS"; fetch "$2" ;;
  unpack) [[ $# == 3 ]] || die "usage: $0 unpack DEPS WORKDIR"; unpack "$2" "$3" ;;
  record) [[ $# == 2 ]] || die "usage: $0 record WHEEL"; record "$2" ;;
  *) die "usage: $0 fetch DEPS | unpack DEPS WORKDIR | record WHEEL" ;;
esac
