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

## The whole suite, on two processes (each test file stays in one, so what a file starts once
## is shared by its tests; the stack's module, the longest, is collected first). Three
## processes were measured no faster on two cores (663 s against 671 s).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

## Unit and task tests only, for every edit: no Ray, no Prefect server, no stack.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src cli tasks flows tests bench
	$(BIN)/ruff format --check src cli tasks flows tests bench

format: $(STAMP)
	$(BIN)/ruff format src cli tasks flows tests bench
	$(BIN)/ruff check --fix src cli tasks flows tests bench

## Speed and default-run figures; the tables go to bench/RESULTS.md, which the README quotes.
bench: $(STAMP)
	@{ echo "# Benchmark results"; echo; \
	  echo "Written by \`make bench\` on $$(date -u +%Y-%m-%d), $$(nproc) cores, $$(uname -m)."; \
	  echo "Each block is one script's output."; } > bench/RESULTS.md.tmp
	@for script in clean_throughput label_throughput train_throughput hf_step image_throughput image_families pipeline hf_finetune stack; do \
	  echo "running bench/$$script.py"; \
	  { echo; echo "## bench/$$script.py"; echo; echo '```'; \
	    $(BIN)/python bench/$$script.py || exit 1; echo '```'; } >> bench/RESULTS.md.tmp || exit 1; \
	done
	@mv bench/RESULTS.md.tmp bench/RESULTS.md
	@cat bench/RESULTS.md
