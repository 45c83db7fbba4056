# Two commands on a fresh machine (python3, make, git): `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# .installed: the project and what it runs on (run, ui, bench); .installed-dev: that and the dev
# extra as well (pytest, ruff, Playwright: test, lint). Each is newer than pyproject.toml once
# made from it, and the dev one newer than the other, so `make run` then `make test`, or the
# other way round, installs each thing once. The venv's own pip is brought up to 26 first: the
# pip that Python 3.11's venv ships (23.2) takes 34 s to resolve the project's 138 packages,
# pip 26 13 s (docs/performance.md, "The test suite's time").
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 3000
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME

.PHONY: setup run test test-fast ui sample lint clean bench bench-quick bench-dask bench-storage

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=26"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(DEV_STAMP)

# Dagster's state (runs, events, schedules) in SQLite under DAGSTER_HOME; no telemetry; one run
# at a time from the run queue (loan_pipeline/settings.py: INSTANCE_YAML).
$(DAGSTER_HOME)/dagster.yaml: | $(STAMP)
	$(BIN)/python -m loan_pipeline setup-home

run: setup  ## materialize every asset on the shipped data (or $$LOAN_BOOK_CSV)
	$(BIN)/python -m loan_pipeline run

# Two test processes, each taking whole files (a file's module fixtures and ordered steps stay
# in one process), the longest first (loan_pipeline_tests/conftest.py): 9 to 11 minutes here
# (docs/performance.md, "The test suite's time"). The suite starts some sixty Python processes
# that import the project (runs, servers, workers): PYTHONDONTWRITEBYTECODE, where it is set,
# is cleared for them, so the project's modules are compiled once (into the git-ignored
# __pycache__ folders), not in every process.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 2 --dist loadfile
test: setup $(DEV_STAMP)  ## the whole test suite
	$(PYTEST)

test-fast: setup $(DEV_STAMP)  ## the inner loop: the suite without the end-to-end tests marked slow
	$(PYTEST) -m "not slow"

# `dg dev` (Dagster's project CLI, which supersedes `dagster dev`) reads [tool.dg] in
# pyproject.toml and starts the webserver, the daemon and the code server in its process group.
# setup-home makes DAGSTER_HOME if missing and, every time, sets the switch the UI's
# "Auto-materialize" tag reads (also in a home made by `python -m loan_pipeline run` or before
# this target did it): loan_pipeline/automation.py, show_automation_on.
ui: $(STAMP)  ## the Dagster UI (dg dev: webserver + daemon) on http://127.0.0.1:$(PORT)
	$(BIN)/python -m loan_pipeline setup-home
	$(BIN)/dg dev -h 127.0.0.1 -p $(PORT)

bench: setup  ## the benchmark: 500 to 10,000,000 rows against the notebook as a script (BENCH_ARGS=...)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-quick: setup  ## the benchmark up to 100,000 rows
	$(BIN)/python benchmarks/bench.py --quick

bench-storage: setup  ## publication's cost: this checkout vs commit 1e06a7e (DuckDB tables), 1M and 10M rows (BENCH_ARGS=...)
	$(BIN)/python benchmarks/bench.py --storage-against 1e06a7e $(BENCH_ARGS)

bench-dask: setup  ## the pipeline on a 2-worker Dask cluster vs locally: 10M and 30M rows (BENCH_ARGS=...)
	$(BIN)/python benchmarks/bench.py --dask $(BENCH_ARGS)

sample: setup  ## regenerate the shipped sample (500 rows, seed 42)
	$(BIN)/python -m loan_pipeline.sample --rows 500 --seed 42 --out data/loan_book_sample.csv

lint: setup $(DEV_STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf storage .dagster_home .pytest_cache
