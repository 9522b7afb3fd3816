#!/usr/bin/env bash
# `make serve RUNNER=docker`: the image's `serve` in a detached container, back once its HEALTHCHECK says healthy.
#   docker/serve.sh start NAME PORT IMAGE SERVE_ARGS...   run container NAME (port 8000 published on
#                                                          127.0.0.1:PORT), wait until healthy; on failure print
#                                                          vLLM's last log lines, remove the container, exit 1
#   docker/serve.sh ask PORT MODEL                         one completion through the published port (curl)
#   docker/serve.sh stop NAME                              stop and remove the container
# Environment: DOCKER (client, default docker), DOCKER_ARGS (more `docker run` options: mounts, --shm-size),
#   SERVE_TIMEOUT (s, default 1800), VLLM_API_KEY (passed to the container by name, never written on a command line).
set -euo pipefail

DOCKER=${DOCKER:-docker}
SERVE_TIMEOUT=${SERVE_TIMEOUT:-1800}
die() { echo "serve: error: $*" >&2; exit 1; }
# The container's last log lines, then its root cause as the error: the last exception line that is not vLLM's
# "see root cause above" wrapper. The container is removed.
fail() {
  local name=$1 why=$2 cause
  "$DOCKER" logs --tail 20 "$name" 2>&1 | sed 's/^/  /' >&2 || true
  cause=$("$DOCKER" logs "$name" 2>&1 | grep -E '(Error|Exception): ' | grep -v 'root cause above' | tail -n 1 |
    sed -E 's/^\([A-Za-z]+ pid=[0-9]+\) [A-Z]+ [0-9-]+ [0-9:]+ \[[^]]+\] //') || true
  "$DOCKER" rm -f "$name" >/dev/null
  die "$why: ${cause:-see the log lines above}"
}

start() {
  local name=$1 port=$2 image=$3 t0 state
  shift 3
  "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
  # In the container the server listens on 0.0.0.0, which `serve` refuses without a key; here the port is
  # published on the host's 127.0.0.1 only, as `make serve` on the host listens, so no key is allowed explicitly.
  local open=()
  [[ -n ${VLLM_API_KEY:-} ]] || open=(--allow-no-api-key)
  # shellcheck disable=SC2086  # DOCKER_ARGS is a list of options
  "$DOCKER" run -d --name "$name" -p "127.0.0.1:$port:8000" -e VLLM_API_KEY ${DOCKER_ARGS:-} \
    "$image" serve "$@" --host 0.0.0.0 --port 8000 "${open[@]}" >/dev/null
  t0=$SECONDS
  while ((SECONDS - t0 < SERVE_TIMEOUT)); do
    state=$("$DOCKER" inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name")
    case $state in
      "running healthy")
        echo "serve: $name healthy after $((SECONDS - t0)) s: http://127.0.0.1:$port/v1 (make serve-stop ends it)"
        return 0 ;;
      running*) sleep 2 ;;
      *) fail "$name" "the server stopped before it was healthy ($state)" ;;
    esac
  done
  fail "$name" "not healthy within $SERVE_TIMEOUT s (raise SERVE_TIMEOUT)"
}

ask() {
  local port=$1 model=$2
  # The key reaches curl on stdin (-H @-), so it is not in the process list.
  printf 'Authorization: Bearer %s\n' "${VLLM_API_KEY:-}" |
    curl -sSf --max-time 300 -H @- -H 'Content-Type: application/json' \
      -d "{\"model\": \"$model\", \"prompt\": \"The capital of France is\", \"max_tokens\": 8}" \
      "http://127.0.0.1:$port/v1/completions"
  echo
}

stop() {
  "$DOCKER" rm -f "$1" >/dev/null 2>&1 && echo "serve: $1 stopped" || echo "serve: no container $1"
}

command=${1:-}
shift || true
case $command in
  start) (($# >= 4)) || die "usage: $0 start NAME PORT IMAGE SERVE_ARGS..."; start "$@" ;;
  ask) (($# == 2)) || die "usage: $0 ask PORT MODEL"; ask "$@" ;;
  stop) (($# == 1)) || die "usage: $0 stop NAME"; stop "$@" ;;
  *) die "usage: $0 start|ask|stop ..." ;;
esac
