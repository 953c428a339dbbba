# make demo: set up .venv, train a short default run (CWCA on Breakout, ~50k steps), report it.
# make test: set up .venv with the test extras and run the test suite.
# make lint: ruff, as configured in pyproject.toml (CI runs it before the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; with a GPU, install your own torch into .venv first and it is kept.
TORCH ?= torch==2.13.0
DEMO_ARGS ?= --agent CWCA --env Breakout -n 50000 --eval-freq 25000 --eval-episodes 2 --save-freq 25000 --log-folder demo-logs --tensorboard-log demo-logs/tb --progress
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/dimattn train $(DEMO_ARGS)
	$(VENV)/bin/dimattn report demo-logs --out demo-logs/report --reps 200 --quiet

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-logs .pytest_cache
