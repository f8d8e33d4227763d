#!/usr/bin/env bash
# The demo on the local stack: migrate, topics, a bundled set of CDC messages (every change type, a merged
# multi-record update, a gap healed by the resync role from a local stand-in of Salesforce's REST API, a redelivery, another
# entity, a CometD message, a poison message), the worker until idle, then the clients and the dead letters.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
W=(.venv/bin/worker)
eval "$("$PY" deploy/stack.py env)"
export WORKER_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" WORKER_POSTGRES__URL="$DATABASE_URL"
export WORKER_OBSERVABILITY__LOG_LEVEL="${WORKER_OBSERVABILITY__LOG_LEVEL:-WARNING}"

"${W[@]}" migrate
"${W[@]}" topics create

# Salesforce cannot be reached from here: resyncs go to the tests' fake of its REST API, on loopback.
SF_PORT="${DEMO_SALESFORCE_PORT:-18443}"
"$PY" -m tests.fakes.salesforce_server --port "$SF_PORT" --seed-file deploy/demo/salesforce_accounts.json &
SF_PID=$!
trap 'kill "$SF_PID" 2>/dev/null || true' EXIT
export WORKER_SALESFORCE__AUTH=session WORKER_SALESFORCE__SESSION_ID=demo \
  WORKER_SALESFORCE__INSTANCE_URL="http://127.0.0.1:$SF_PORT"

"${W[@]}" cdc produce deploy/demo/changes.jsonl deploy/demo/poison.json
echo "running ingest, resync, relay and projector until idle..."
"${W[@]}" run all --exit-when-idle 3

echo; echo "== clients (read model) =="
"${W[@]}" query clients --include-deleted --limit 20
echo; echo "== clients by status =="
"${W[@]}" query counts
echo; echo "== a client after a gap, healed by the resync role reading Salesforce =="
"${W[@]}" query client 0015g00000DEMO6AAA
echo; echo "== the resync role's queue (empty: every gap healed) =="
"${W[@]}" resync status
echo; echo "== dead letters =="
"${W[@]}" dlq list
FIRST="$("${W[@]}" dlq list --json | "$PY" -c 'import json, sys; rows = json.load(sys.stdin); print(rows[0]["dlq"] if rows else "")')"
if [ -n "$FIRST" ]; then
  echo; echo "== why: worker dlq show $FIRST (headers, stack trace, the message decoded) =="
  "${W[@]}" dlq show "$FIRST" | head -40
fi
echo; echo "== consumer lag and read-model freshness =="
"${W[@]}" lag
echo; echo "== reconcile: every Account of Salesforce against the read model (exit 4 if anything drifts) =="
"${W[@]}" reconcile --full --report-only
