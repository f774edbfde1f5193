# NIH ChestX-ray14 release pipeline. `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := airflow,celery,dev

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint format typecheck ui stack-up stack-down lock bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project from its pinned constraints

demo: $(STAMP)  ## synthetic mirror + local S3 + the DAG through Airflow; prints the release
	$(BIN)/cxr demo

test: $(STAMP)  ## the whole test suite (unit, DAG integrity, integration against real S3 and Airflow)
	@scripts/ensure-chromium
	$(BIN)/pytest

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/pytest -m "not integration"

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)  ## mypy --strict over pipeline/
	$(BIN)/mypy

ui: $(STAMP)  ## the Airflow UI on 127.0.0.1:8780 against the demo's store
	$(BIN)/cxr ui

stack-up: $(STAMP)  ## start the local S3 endpoint in the background (prints export lines)
	@$(BIN)/cxr stack up

stack-down: $(STAMP)  ## stop the local S3 endpoint (data is kept)
	@$(BIN)/cxr stack down

lock: $(STAMP)  ## re-freeze requirements/constraints.txt from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements/constraints.txt

bench: $(STAMP)  ## run the benchmarks (ratios measured side by side)
	$(BIN)/python -m benchmarks

clean:  ## remove .venv and the demo workspace (stops the demo's S3 endpoint first)
	-@[ -x $(BIN)/cxr ] && $(BIN)/cxr stack down --dir .cxr/stack
	rm -rf $(VENV) .cxr .pytest_cache .mypy_cache .ruff_cache

# --- Airflow on this machine (see the README's "Operations guide") --------------------------------------
.PHONY: scheduler celery docker-lint
AIRFLOW_PORT ?= 8780

scheduler: $(STAMP)  ## Airflow (LocalExecutor, SQLite) on 127.0.0.1:8780 (AIRFLOW_PORT=...) against the demo store
	$(BIN)/python -m pipeline.dev.airflow --executor local --port $(AIRFLOW_PORT)

celery: $(STAMP)  ## the same on CeleryExecutor: local PostgreSQL + Redis, two worker processes
	$(BIN)/python -m pipeline.dev.airflow --executor celery --workers 2 --port $(AIRFLOW_PORT)

docker-lint: $(STAMP)  ## hadolint docker/Dockerfile
	$(BIN)/hadolint docker/Dockerfile
