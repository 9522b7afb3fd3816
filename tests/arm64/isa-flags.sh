#!/usr/bin/env bash
# make image-isa-flags: the compiler flags the image's arm64 vLLM build gives vLLM's C++ sources, for each
# VLLM_ARM_ISA, shown without Arm hardware. The pinned sdist (deps/, `make deps`) is unpacked, patched and
# ISA-pinned by the same docker/vllm-sources.sh the Dockerfile runs, then vLLM's cmake/cpu_extension.cmake is
# configured by arm64 cmake and g++: natively on an arm64 host (reading its /proc/cpuinfo, as the build does),
# else in the QEMU-emulated environment of make test-arm64, where cmake reads graviton3-cpuinfo (a Neoverse V1,
# which has bf16 and i8mm: the build host that makes an unpinned image crash on Graviton2) instead of the x86
# host's /proc/cpuinfo, which QEMU user mode passes through. cmake stops right after the ISA decision (before
# oneDNN and ACL, which need their sources) and prints the flags.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "isa-flags: error: $*" >&2; exit 1; }
version=$(sed -n 's/^ARG VLLM_VERSION=//p' "$repo/Dockerfile")
[[ -f $repo/deps/vllm-$version.tar.gz ]] || die "deps/vllm-$version.tar.gz is missing (fix: make deps)"
pinned() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$repo/requirements/vllm-build.txt"; }

case $(uname -m) in
  aarch64 | arm64) work=$(mktemp -d); inside=$work; cpuinfo=/proc/cpuinfo; run() { bash -c "$1"; } ;;
  x86_64)
    "$repo/tests/arm64/emulated.sh" prepare
    work=$("$repo/tests/arm64/emulated.sh" scratch)/isa-flags; inside=/scratch/isa-flags
    cpuinfo=/src/tests/arm64/graviton3-cpuinfo
    run() { "$repo/tests/arm64/emulated.sh" run bash -c "$1"; } ;;
  *) die "unsupported host $(uname -m) (fix: run on arm64 or x86_64)" ;;
esac
rm -rf "$work"; mkdir -p "$work"

# arm64 cmake and ninja, the build requirements' versions, from PyPI (this host's pip downloads; nothing installed)
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_aarch64 --python-version 3.11 \
  -d "$work" "cmake==$(pinned cmake)" "ninja==$(pinned ninja)" 2> >(grep -v "^WARNING: Location 'file:" >&2)
for tool in cmake ninja; do python3 -m zipfile -e "$work/$tool"-*.whl "$work/tools"; done
mv "$work"/tools/ninja-*.data/scripts/ninja "$work/tools/ninja-bin"
chmod +x "$work"/tools/cmake/data/bin/* "$work/tools/ninja-bin"

for isa in neoverse-n1 bf16-i8mm; do
  mkdir -p "$work/$isa"
  ARCH=arm64 VLLM_ARM_ISA=$isa "$repo/docker/vllm-sources.sh" unpack "$repo/deps" "$work/$isa" >"$work/$isa/build.env"
  src=$work/$isa/vllm-$version
  # Stop after the ISA decision: print what reaches the compiler for vLLM's own sources.
  sed -i 's|^\( *\)list(APPEND CXX_COMPILE_FLAGS ${MARCH_FLAGS})|&\n\1get_directory_property(_defs COMPILE_DEFINITIONS)\n\1message(STATUS "isa-flags: CXX_COMPILE_FLAGS=${CXX_COMPILE_FLAGS} COMPILE_DEFINITIONS=${_defs}")\n\1message(FATAL_ERROR "isa-flags: stopped after the ISA decision")|' \
    "$src/cmake/cpu_extension.cmake"
  sed -i "s|COMMAND cat /proc/cpuinfo|COMMAND cat $cpuinfo|" "$src/cmake/cpu_extension.cmake"
  grep -q 'isa-flags: stopped' "$src/cmake/cpu_extension.cmake" || die "cpu_extension.cmake changed upstream (fix: update $0)"
  cat >"$work/$isa/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.26)
project(isa_flags LANGUAGES CXX)
set(Python_EXECUTABLE python3)
include($inside/$isa/vllm-$version/cmake/utils.cmake)
include($inside/$isa/vllm-$version/cmake/cpu_extension.cmake)
EOF
  echo "== VLLM_ARM_ISA=$isa"
  run ". $inside/$isa/build.env; cd $inside/$isa && $inside/tools/cmake/data/bin/cmake -G Ninja \
    -DCMAKE_MAKE_PROGRAM=$inside/tools/ninja-bin -S . -B build 2>&1" >"$work/$isa/cmake.log" || true
  grep -q 'isa-flags: CXX_COMPILE_FLAGS' "$work/$isa/cmake.log" || { tail -20 "$work/$isa/cmake.log" >&2; die "cmake did not reach the ISA decision"; }
  grep -E 'isa-flags: CXX|BF16|I8MM|ARMv8' "$work/$isa/cmake.log" | sed 's/^-- /   /'
done
# For contrast, upstream's own detection (the bf16-i8mm tree, whose cmake is unpinned, without its environment).
echo "== no pin (upstream detects the build host's features)"
run "cd $inside/bf16-i8mm && rm -rf build && $inside/tools/cmake/data/bin/cmake -G Ninja \
  -DCMAKE_MAKE_PROGRAM=$inside/tools/ninja-bin -S . -B build 2>&1" | grep -E 'isa-flags: CXX' | sed 's/^-- /   /' || true
