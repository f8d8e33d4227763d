SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WITH_STACK := PYTHON=$(PY) deploy/with-stack.sh

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || (echo "Python 3.11+ is required" && exit 1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev extra

up: install  ## start Kafka (KRaft) and PostgreSQL on 127.0.0.1 (idempotent)
	$(PY) deploy/stack.py up

down:  ## stop both, by PID
	$(PYTHON) deploy/stack.py down

status:  ## show the local stack
	$(PYTHON) deploy/stack.py status

lint: install  ## ruff
	$(VENV)/bin/ruff check worker tests deploy

typecheck: install  ## mypy (strict on worker/domain and worker/application)
	$(VENV)/bin/mypy worker

test: install lint typecheck  ## the test suite: unit, integration, e2e (starts the stack when needed)
	$(WITH_STACK) $(VENV)/bin/pytest tests/unit tests/integration tests/e2e

unit: install  ## unit tests only (no servers)
	$(VENV)/bin/pytest tests/unit

demo: install  ## stack up, migrate, topics, CDC messages in, clients and dead letters out
	$(PY) deploy/stack.py up
	PYTHON=$(PY) bash deploy/demo.sh

bench: install  ## benchmark against same-run baselines (BENCH_N, BENCH_SCALE, OUT=file.json)
	$(WITH_STACK) $(PY) -m tests.benchmarks.run $(if $(OUT),--out $(OUT))

compose-up:  ## the compose stack, where a Docker engine answers
	@docker info >/dev/null 2>&1 || (echo "no Docker engine answers here: use make up / make demo" && exit 1)
	docker compose -f deploy/compose.yaml up -d --build

compose-down:
	@docker info >/dev/null 2>&1 || (echo "no Docker engine answers here" && exit 1)
	docker compose -f deploy/compose.yaml down

clean: down  ## stop the stack and remove its data
	rm -rf .stack

.PHONY: help install up down status lint typecheck test unit demo bench compose-up compose-down clean
