# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv if missing and install the pinned stack (constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed


.PHONY: install run test test-fast lint format bench

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## The main job on the embedded defaults: the whole pipeline, change-aware
## (data refresh -> train -> evaluate -> register -> promote).
run: $(STAMP)
	$(BIN)/aigc run

## The whole suite.
test: $(STAMP)
	$(BIN)/python -m pytest

## Unit and task tests only (no end-to-end flows).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src cli tasks flows tests bench
	$(BIN)/ruff format --check src cli tasks flows tests bench

format: $(STAMP)
	$(BIN)/ruff format src cli tasks flows tests bench
	$(BIN)/ruff check --fix src cli tasks flows tests bench

bench: $(STAMP)
	$(BIN)/python bench/clean_throughput.py
	$(BIN)/python bench/label_throughput.py
	$(BIN)/python bench/train_throughput.py
