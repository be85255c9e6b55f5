# soakcheck: a production-readiness soak checklist as a pytest suite.
# Every target bootstraps what it needs; running one twice does no work twice.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TARGET ?= fixtures/targets/local.toml
SCENARIO ?= healthy
WINDOW ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv redis check monitor p0 verdict demo test bench lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'
	@echo "variables: TARGET=file.toml (default $(TARGET)), WINDOW=id,"
	@echo "  SCENARIO=name for demo, AGAIN=1 for p0, PYTEST_ARGS for test"

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the dependencies

redis: ## install redis-server when missing (needs root on Debian/Ubuntu)
	@bash scripts/ensure-redis.sh

check: $(STAMP) ## one checkpoint of the current window against TARGET
	$(PY) -m soakcheck check --target $(TARGET) $(if $(WINDOW),--window $(WINDOW))

monitor: $(STAMP) ## run the whole window: a checkpoint at every slot, then the verdict
	$(PY) -m soakcheck monitor --target $(TARGET)

p0: $(STAMP) ## the manual P0 tests, once per window (they change state)
	$(PY) -m soakcheck p0 --target $(TARGET) $(if $(AGAIN),--again)

verdict: $(STAMP) ## decide APPROVED (0), CONDITIONAL (1) or REJECTED (2)
	$(PY) -m soakcheck verdict --target $(TARGET) $(if $(WINDOW),--window $(WINDOW))

demo: $(STAMP) redis ## compressed window on Redis and the bundled backend (SCENARIO=leak ...)
	$(PY) -m soakcheck demo --scenario $(SCENARIO)

test: $(STAMP) redis ## the self-tests, against real Redis and the reference backend
	$(PY) -m pytest selftests $(PYTEST_ARGS)

bench: $(STAMP) redis ## the benchmarks in bench/ (minutes; see bench/README.md)
	$(PY) bench/bench_checkpoint.py
	$(PY) bench/bench_logs.py
	$(PY) bench/bench_queues.py

lint: $(STAMP) ## ruff and mypy
	$(PY) -m pip install --quiet ruff mypy
	$(PY) -m ruff check soakcheck tests selftests bench
	$(PY) -m ruff format --check soakcheck tests selftests bench
	$(PY) -m mypy

clean: ## remove the virtual environment and generated reports
	rm -rf $(VENV) reports/*/ reports/.demo
