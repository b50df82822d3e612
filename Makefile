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

run: install
	$(BIN)/auditlog db upgrade
	$(BIN)/auditlog demo --events 5000 --if-empty
	$(BIN)/streamlit run app.py --server.headless=true

test: install system-deps
	$(BIN)/python -m pytest -q

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
