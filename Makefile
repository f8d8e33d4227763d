SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# python3.11, else python3 when it is 3.11 or newer (checked when the venv is created).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# stack.py is stdlib only; the venv's python (once it exists) adds a real metadata request to the readiness check.
STACK_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
WITH_STACK := PYTHON=$(PY) deploy/with-stack.sh

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# Re-installed only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || (echo "python3.11 or python3 (3.11+) is required" && exit 1)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| (echo "Python 3.11+ is required ($(PYTHON) is $$($(PYTHON) -V 2>&1))" && exit 1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the package with its dev extra (same as install)

install: $(STAMP)  ## create .venv and install the package with its dev extra

up:  ## start Kafka (KRaft) and PostgreSQL on 127.0.0.1 (idempotent); STACK_* variables change ports and folder
	$(STACK_PY) deploy/stack.py up

down:  ## stop both, by PID
	$(STACK_PY) deploy/stack.py down

status:  ## show the local stack
	$(STACK_PY) deploy/stack.py status

env:  ## print the export lines for KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL
	@$(STACK_PY) deploy/stack.py env

lint: install  ## ruff
	$(VENV)/bin/ruff check worker tests deploy

typecheck: install  ## mypy (strict on worker/domain and worker/application)
	$(VENV)/bin/mypy worker

# with-stack.sh uses KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL when both are set; otherwise it starts the stack, runs
# pytest, and stops what it started, also when the tests fail. pytest's exit code is kept.
# STACK=containers: testcontainers' Kafka and PostgreSQL instead (Docker needed; tests/stack_select.py chooses).
TEST_STACK = $(if $(filter containers,$(STACK)),STACK=containers $(PY) -m tests.stack_select,$(WITH_STACK))
# Two pytest workers (pytest-xdist): every test has its own database, topics and groups, and most of an e2e
# test's time is waiting on processes, so two at once halve the wall time on a 2-core machine.
TEST_WORKERS ?= 2
test: install lint typecheck  ## the test suite: unit, integration, e2e (starts the stack when needed; STACK=containers; TEST_WORKERS)
	$(TEST_STACK) $(VENV)/bin/pytest -n $(TEST_WORKERS) tests/unit tests/integration tests/e2e

unit: install  ## unit tests only (no servers)
	$(VENV)/bin/pytest tests/unit

FUZZ_EXAMPLES ?= 100000
fuzz: install  ## fuzz the decode-and-store path with mutated CDC samples (FUZZ_EXAMPLES, default 100000); prints outcomes
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest tests/unit/test_fuzz_decode.py -q -s -p no:cacheprovider --timeout=0 --log-level=CRITICAL \
		-k every_mutated

demo: install up  ## stack up, migrate, topics, CDC messages in, clients and dead letters out
	PYTHON=$(PY) bash deploy/demo.sh

bench: install  ## benchmark against same-run baselines (BENCH_N, BENCH_SCALE, OUT=file.json)
	$(WITH_STACK) $(PY) -m tests.benchmarks.run $(if $(OUT),--out $(OUT))

chaos: install  ## the chaos test on its own durable stack (CHAOS_CHANGES, CHAOS_KILLS, CHAOS_SEED; tests/chaos/run.py)
	$(PY) -m tests.chaos

compose-up:  ## the compose stack, where a Docker engine answers
	@docker info >/dev/null 2>&1 || (echo "no Docker engine answers here: use make up / make demo" && exit 1)
	docker compose -f deploy/compose.yaml up -d --build

compose-down:
	@docker info >/dev/null 2>&1 || (echo "no Docker engine answers here" && exit 1)
	docker compose -f deploy/compose.yaml down

clean:  ## stop the stack and remove its data (the .stack folder, or STACK_DIR)
	$(STACK_PY) deploy/stack.py clean

.PHONY: help venv install up down status env lint typecheck test unit fuzz demo bench chaos compose-up compose-down clean
