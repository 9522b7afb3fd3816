#!/usr/bin/env bash
# A Docker engine for `make image-local` / `make image-check` on a machine that runs none (our x86_64 build
# machines, CI). Idempotent; needs root only when something is missing.
#   docker/docker-engine.sh [start]   install docker.io + debootstrap with apt if missing, start dockerd if no
#                                      engine answers, wait until `docker info` answers
#   docker/docker-engine.sh stop      stop the dockerd that `start` started (recorded in DOCKERD_PIDFILE), if any;
#                                      an engine it did not start is left alone
# Environment: DOCKER (the client to ask, default /usr/bin/docker: docker.io's 20.10 client with BuildKit built in),
#   DOCKERD_LOG (default /tmp/dockerd.log), DOCKERD_PIDFILE (default /tmp/docker-engine.pid), DOCKERD_WAIT (s, 60).
# Nothing else is set up: no binfmt/QEMU (arm64 emulation is tests/arm64/run.sh's business), no registry login.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/tmp/docker-engine.pid}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
ENGINE_PID=/var/run/docker.pid  # dockerd's own pid file (its default), read once the engine answers
say() { echo "docker-engine: $*"; }
die() { echo "docker-engine: error: $*" >&2; exit 1; }
answers() { "$DOCKER" info >/dev/null 2>&1; }
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

start() {
  local missing=() pkg pid
  for pkg in docker.io debootstrap; do installed "$pkg" || missing+=("$pkg"); done
  if ((${#missing[@]})); then
    ((EUID == 0)) || die "${missing[*]} not installed and not root (fix: sudo $0)"
    say "installing ${missing[*]} (apt)"
    apt-get update -qq
    # policy-rc.d exit 101: the package's init script must not start an engine that `stop` would not know about
    local policy=/usr/sbin/policy-rc.d ours=
    [[ -e $policy ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || { [[ -z $ours ]] || rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
    [[ -z $ours ]] || rm -f "$policy"
  fi
  if answers; then
    say "an engine already answers ($("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null)); not starting one"
    return
  fi
  ((EUID == 0)) || die "no Docker engine answers and not root (fix: sudo $0)"
  pgrep -x dockerd >/dev/null && die "a dockerd runs but does not answer (see its log, e.g. $DOCKERD_LOG)"
  setsid dockerd --pidfile "$ENGINE_PID" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  say "starting dockerd, log: $DOCKERD_LOG"
  for ((i = 0; i < DOCKERD_WAIT; i++)); do
    if answers; then
      pid=$(<"$ENGINE_PID")
      echo "$pid" >"$DOCKERD_PIDFILE"
      say "engine answers: dockerd pid $pid ($("$DOCKER" info -f '{{.ServerVersion}}, storage {{.Driver}}, root {{.DockerRootDir}}'))"
      return
    fi
    sleep 1
    pgrep -x dockerd >/dev/null || break
  done
  tail -n 20 "$DOCKERD_LOG" >&2
  die "dockerd did not answer within ${DOCKERD_WAIT}s (log: $DOCKERD_LOG)"
}

stop() {
  local pid
  [[ -f $DOCKERD_PIDFILE ]] || { say "no dockerd started by this script ($DOCKERD_PIDFILE); nothing to stop"; return; }
  pid=$(<"$DOCKERD_PIDFILE")
  rm -f "$DOCKERD_PIDFILE"
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || { say "dockerd (pid $pid) already gone"; return; }
  kill -TERM "$pid"
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || { say "stopped dockerd (pid $pid)"; return; }
    sleep 1
  done
  die "dockerd (pid $pid) still runs 30 s after SIGTERM (log: $DOCKERD_LOG)"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
