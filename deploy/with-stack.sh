#!/usr/bin/env bash
# Runs a command against the local stack: uses KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL when both are set,
# otherwise starts the stack, exports them, runs the command, and stops the stack again if this script
# started it (also when the command fails). The command's exit code is preserved.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py=python3

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi

started=0
if ! "$py" "$here/stack.py" running >/dev/null 2>&1; then
  started=1
fi
cleanup() {
  if [ "$started" = 1 ]; then "$py" "$here/stack.py" down; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$py" "$here/stack.py" up || exit 1
eval "$("$py" "$here/stack.py" env)"
"$@"
