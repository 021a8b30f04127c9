# `make test` and `make demo` build their own virtual environment on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Torch's CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
THREADS ?= 2

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/loopwm-rl train pendulum demo train.threads=$(THREADS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	OMP_NUM_THREADS=$(THREADS) WANDB_MODE=disabled $(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/step_cost.py --threads $(THREADS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
