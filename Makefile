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
DIR             ?= $(shell ls -td $(OUT)/*-w4a8dyn-* 2>/dev/null | head -n 1)
PYTHON_BASE     ?= python3.11
VENV            ?= .venv
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
VLLM_WHEEL      ?=
PYTEST_ARGS     ?=
BENCH_SHAPE     ?= smollm-135m

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

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
quantize: $(STAMP) ## Quantize MODEL (Hub id or directory) into OUT/ (METHOD, SCHEME, GROUPSIZE)
	@[[ -n "$(MODEL)" ]] || { echo "MODEL is required, e.g. make quantize MODEL=deepseek-ai/DeepSeek-V2-Lite"; exit 2; }
	$(PY) -m quantize "$(MODEL)" --method $(METHOD) --scheme $(SCHEME) --groupsize $(GROUPSIZE) \
	  --output-root $(OUT) $(QUANTIZE_ARGS)

.PHONY: validate
validate: $(STAMP) ## Check DIR (default: newest output in OUT/) against its recipe
	@[[ -n "$(DIR)" ]] || { echo "DIR is required (no output in $(OUT)/ yet), e.g. make validate DIR=out/<name>"; exit 2; }
	$(PY) -m quantize validate "$(DIR)"

.PHONY: smoke
smoke: $(STAMP) ## Load DIR (default: newest output in OUT/) in vLLM and generate
	@[[ -n "$(DIR)" ]] || { echo "DIR is required (no output in $(OUT)/ yet), e.g. make smoke DIR=out/<name>"; exit 2; }
	$(PY) -m quantize smoke "$(DIR)" $(SMOKE_ARGS)

.PHONY: tiny-model
tiny-model: $(STAMP) ## Build the offline tiny Llama used by the demo (OUT/tiny-llama)
	[[ -f $(OUT)/tiny-llama/config.json ]] || $(PY) -m tests.tiny_models llama $(OUT)/tiny-llama

.PHONY: demo
demo: tiny-model ## Quantize the tiny model, validate it and smoke it in vLLM (no Hub needed)
	$(MAKE) quantize MODEL=$(OUT)/tiny-llama QUANTIZE_ARGS="--overwrite $(QUANTIZE_ARGS)"
	$(MAKE) validate
	$(MAKE) smoke SMOKE_ARGS="--eager --reference $(SMOKE_ARGS)"

##@ Development

.PHONY: test
test: $(STAMP) ## Run the test suite (about 3 minutes on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff and shellcheck
	$(PY) -m ruff check quantize tests scripts
	$(PY) -m ruff format --check quantize tests scripts
	$(VENV)/bin/shellcheck scripts/*.sh .ci/run

.PHONY: lock
lock: ## Regenerate the hash locks in requirements/ (needs PyPI and uv)
	scripts/lock.sh

.PHONY: clean
clean: ## Remove OUT/ and caches (keeps .venv)
	rm -rf $(OUT) .pytest_cache .ruff_cache

.PHONY: bench-seed
bench-seed: $(STAMP) ## Seed script vs quantize side by side: wall time, peak RSS, output size (BENCH_SHAPE)
	$(PY) scripts/bench-seed.py --shape $(BENCH_SHAPE)
