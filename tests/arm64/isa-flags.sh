#!/usr/bin/env bash
# make image-isa-flags: the compiler flags the image's arm64 vLLM build gives vLLM's C++ sources, for each
# VLLM_ARM_ISA, shown without Arm hardware. The pinned sdist (deps/, `make deps`) is unpacked, patched and
# ISA-pinned by the same docker/vllm-sources.sh the Dockerfile runs, then vLLM's cmake/cpu_extension.cmake is
# configured by arm64 cmake on an arm64 CPU: natively on an arm64 host, else in the QEMU-emulated environment
# of make test-arm64, whose "max" CPU reports bf16 and i8mm (so only the pin can keep them out). cmake stops
# right after the ISA decision (before oneDNN and ACL, which need their sources) and prints the flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "isa-flags: error: $*" >&2; exit 1; }
version=$(sed -n 's/^ARG VLLM_VERSION=//p' "$repo/Dockerfile")
[[ -f $repo/deps/vllm-$version.tar.gz ]] || die "deps/vllm-$version.tar.gz is missing (fix: make deps)"
cmake_version=$(sed -n 's/^cmake==\([^ ]*\).*/\1/p' "$repo/requirements/vllm-build.txt")

case $(uname -m) in
  aarch64 | arm64) work=$(mktemp -d); inside=$work; run() { bash -c "$1"; } ;;
  x86_64)
    "$repo/tests/arm64/emulated.sh" prepare
    work=$("$repo/tests/arm64/emulated.sh" scratch)/isa-flags; inside=/scratch/isa-flags
    run() { "$repo/tests/arm64/emulated.sh" run bash -c "$1"; } ;;
  *) die "unsupported host $(uname -m) (fix: run on arm64 or x86_64)" ;;
esac
rm -rf "$work"; mkdir -p "$work"

# arm64 cmake, the build requirements' version, from PyPI (the pip of this host downloads; nothing is installed)
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_aarch64 --python-version 3.11 \
  -d "$work" "cmake==$cmake_version" 2> >(grep -v "^WARNING: Location 'file:" >&2)
python3 -m zipfile -e "$work"/cmake-*.whl "$work/cmake-wheel"
chmod +x "$work"/cmake-wheel/cmake/data/bin/*

for isa in neoverse-n1 bf16-i8mm; do
  mkdir -p "$work/$isa"
  ARCH=arm64 VLLM_ARM_ISA=$isa "$repo/docker/vllm-sources.sh" unpack "$repo/deps" "$work/$isa" >"$work/$isa/build.env"
  src=$work/$isa/vllm-$version
  # Stop after the ISA decision: print what reaches the compiler for vLLM's own sources.
  sed -i 's|^\( *\)list(APPEND CXX_COMPILE_FLAGS ${MARCH_FLAGS})|&\n\1get_directory_property(_defs COMPILE_DEFINITIONS)\n\1message(STATUS "isa-flags: CXX_COMPILE_FLAGS=${CXX_COMPILE_FLAGS} COMPILE_DEFINITIONS=${_defs}")\n\1message(FATAL_ERROR "isa-flags: stopped after the ISA decision")|' \
    "$src/cmake/cpu_extension.cmake"
  grep -q 'isa-flags: stopped' "$src/cmake/cpu_extension.cmake" || die "cpu_extension.cmake changed upstream (fix: update $0)"
  cat >"$work/$isa/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.26)
project(isa_flags LANGUAGES CXX)
set(Python_EXECUTABLE python3)
include($inside/$isa/vllm-$version/cmake/utils.cmake)
include($inside/$isa/vllm-$version/cmake/cpu_extension.cmake)
EOF
  echo "== VLLM_ARM_ISA=$isa"
  run ". $inside/$isa/build.env; cd $inside/$isa && $inside/cmake-wheel/cmake/data/bin/cmake -S . -B build 2>&1" \
    | grep -E 'isa-flags: CXX|BF16|I8MM|ARMv8' | sed 's/^-- /   /'
done
