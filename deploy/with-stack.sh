#!/usr/bin/env bash
# deploy/with-stack.sh CMD [ARGS...]: runs CMD against the local stack.
#
# When KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are both set, CMD just runs against them. Otherwise the stack is
# started (deploy/stack.py up), the two variables are exported, CMD runs, and whatever this script started is
# stopped again: also when CMD fails or the script is interrupted (INT, TERM, HUP). A server that was already
# running before is left running. CMD's exit code is this script's exit code.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ] || ! command -v "$py" >/dev/null 2>&1; then
  if [ -x "$here/../.venv/bin/python" ]; then py="$here/../.venv/bin/python"; else py=python3; fi
fi
stack() { "$py" "$here/stack.py" "$@"; }

if [ "$#" -eq 0 ]; then
  echo "usage: deploy/with-stack.sh CMD [ARGS...]" >&2
  exit 2
fi

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi

# What runs already is not ours to stop.
started=()
stack running kafka || started+=(kafka)
stack running postgres || started+=(postgres)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ "${#started[@]}" -gt 0 ]; then
    echo "with-stack: stopping what this run started: ${started[*]}" >&2
    stack down "${started[@]}" || echo "with-stack: stack.py down failed: run make status / make down" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

stack up || exit 1
eval "$(stack env)" || exit 1
export KAFKA_BOOTSTRAP_SERVERS DATABASE_URL KAFKA_LIBS

# CMD runs as a background job so that a signal sent to this script alone is handled at once (bash runs traps only
# between commands; `wait` returns early). The subshell restores SIGINT, which bash ignores in background jobs, and
# keeps stdin. Ctrl-C reaches CMD directly (same process group); TERM/HUP sent to this script are passed on.
( trap - INT QUIT; exec "$@" ) <&0 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM HUP
trap ':' INT
while :; do
  wait "$child"
  rc=$?
  kill -0 "$child" 2>/dev/null || break
done
wait "$child" 2>/dev/null
last=$?
[ "$last" -ne 127 ] && rc=$last
exit "$rc"
