#!/usr/bin/env bash
# The `name==version` pins of a hash lock (requirements/lock-linux-*.txt), one per line, without hashes:
# for `pip install -c` of tools that must not move the stack (make lm-eval, tests/arm64/emulated.sh).
set -euo pipefail
[[ $# -eq 1 && -f $1 ]] || { echo "usage: $0 requirements/lock-linux-<arch>.txt" >&2; exit 2; }
sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' "$1"
