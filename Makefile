# Two commands: `make run` and `make test`. Both set everything up from a bare Python.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export AUDITLOG_HOME ?= $(CURDIR)/.auditlog

.PHONY: run test bench install system-deps check lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests need (browser, syslog receiver); a no-op when present.
system-deps:
	bash scripts/system-deps.sh

# The dashboard and the HTTP API (port 8600), with a demo API key printed (scripts/run.sh).
run: install
	BIN=$(BIN) bash scripts/run.sh

test: install system-deps
	$(BIN)/python -m pytest -q

# WORKERS: uvicorn processes of benchmarks/bench_http.py (`make bench WORKERS=2`).
bench: export AUDITLOG_BENCH_WORKERS = $(or $(WORKERS),1)
bench: install system-deps
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

# The gate beside `make test` (also in .ci/run): lint, format, strict types (package and tests).
SOURCES := src tests benchmarks app.py pages ui
check: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

lint: check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
