# make demo: set up .venv, train NA and CWCA on Breakout (30k steps each), report the two side by side.
# make test: set up .venv with the test extras and run the test suite.
# make lint: ruff, as configured in pyproject.toml (CI runs it before the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; with a GPU, install your own torch into .venv first and it is kept.
TORCH ?= torch==2.13.0
DEMO_AGENTS ?= NA CWCA
DEMO_ARGS ?= --env Breakout -n 30000 --eval-freq 10000 --eval-episodes 2 --save-freq 10000 --log-folder demo-logs --tensorboard-log demo-logs/tb --progress
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	for agent in $(DEMO_AGENTS); do $(VENV)/bin/dimattn train --agent $$agent $(DEMO_ARGS) || exit 1; done
	$(VENV)/bin/dimattn report demo-logs --out demo-logs/report --reps 200 --quiet
	@echo "next: source $(VENV)/bin/activate   (puts dimattn on your PATH), then e.g. dimattn --help"

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .


clean:
	rm -rf $(VENV) demo-logs .pytest_cache
