# make demo: set up .venv (dimattn alone, no test extras), train NA and CWCA on Breakout (30k steps each), report
#            the two side by side. Each run starts afresh: it replaces the last demo's demo-logs/.
# make test: set up .venv with the test extras and run the test suite.
# make lint: ruff, as configured in pyproject.toml (CI runs it before the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch; with a GPU, install your own torch into .venv first and it is kept.
TORCH ?= torch==2.13.0
DEMO_AGENTS ?= NA CWCA
DEMO_LOGS ?= demo-logs
DEMO_RUN ?= --env Breakout -n 30000 --eval-freq 10000 --eval-episodes 2 --save-freq 10000 --progress
DEMO_ARGS = $(DEMO_RUN) --log-folder $(DEMO_LOGS) --tensorboard-log $(DEMO_LOGS)/tb
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

# The test extras (pytest, playwright, ray, ruff, and the track extra's wandb and mlflow) on top: only make test and make lint need them.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(DEMO_LOGS)   # the last demo's runs: a second demo would train _3 and _4 beside them, same seed
	for agent in $(DEMO_AGENTS); do $(VENV)/bin/dimattn train --agent $$agent $(DEMO_ARGS) || exit 1; done
	$(VENV)/bin/dimattn report $(DEMO_LOGS) --out $(DEMO_LOGS)/report --reps 200 --quiet
	@echo "next: source $(VENV)/bin/activate   (puts dimattn on your PATH), then e.g. dimattn --help"

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .


clean:
	rm -rf $(VENV) demo-logs .pytest_cache
