# `make test` and `make demo` build their own virtual environment on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo needs only the package; the tests add the dev and mujoco extras (44 s more on this
# machine's pip cache), so `make demo` on a fresh clone does not wait for them.
CORE := $(VENV)/.core
STAMP := $(VENV)/.installed
# Torch's CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# One torch thread per run: on this package's model sizes a second thread bought 0.96-1.04x
# (benchmarks/concurrency.py). The test suite runs the same way, as two pytest-xdist workers of
# one thread each: beside one training run it took 18 min so, against 28-29 min as one process
# of two threads (README, first section).
THREADS ?= 1
TEST_THREADS ?= 1
TEST_WORKERS ?= 2

.PHONY: setup demo test lint layers bench clean

$(CORE): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $(CORE)

$(STAMP): $(CORE)
	$(BIN)/pip install -q -e ".[dev,mujoco]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(CORE)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/loopwm-rl train bouncing_demo train.threads=$(THREADS)

lint: $(STAMP)
	$(BIN)/ruff check .

# import-linter reads the package's folder, but loopwm_rl.envs and loopwm_rl.agents live in
# envs/ and agents/ (package-dir): check a staged copy laid out as the installed package.
layers: $(STAMP)
	rm -rf build/layers && mkdir -p build/layers
	cp -r loopwm_rl build/layers/loopwm_rl && cp -r envs build/layers/loopwm_rl/envs && cp -r agents build/layers/loopwm_rl/agents
	cd build/layers && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml --no-cache

test: $(STAMP) lint layers
	OMP_NUM_THREADS=$(TEST_THREADS) WANDB_MODE=disabled $(BIN)/pytest -q -rs --durations=15 -n $(TEST_WORKERS)

bench: $(STAMP)
	# a lone timing run: 2 threads with the active wait policy (BENCHMARKS.md, step cost)
	OMP_WAIT_POLICY=ACTIVE $(BIN)/python benchmarks/step_cost.py --threads 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
