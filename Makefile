# make demo: set up .venv (dimattn alone, no test extras), train NA and CWCA on Breakout (30k steps each), report
#            the two side by side; then train NA to the published study's first evaluation (200k steps, the
#            fewest `dimattn compare` can judge; its own folder, demo-logs-200k/, so that the report's folder keeps
#            the two 30k runs) and end on compare's verdict against the published study.
#            Each run starts afresh: it replaces the last demo's demo-logs/.
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
# The published runs are first evaluated at 200,000 steps (every 200,000 after): one run reaching it is the
# smallest thing compare can judge; -n sets the length of its learning-rate schedule (a protocol line says so).
DEMO_COMPARE_RUN ?= --agent NA --env Breakout -n 200000 --eval-freq 200000 --eval-episodes 5 --save-freq 0 --progress
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

# The test extras (pytest, playwright, ray, ruff, the tune extra's optuna, plotly and cmaes, the track extra's wandb
# and mlflow) on top: only make test and make lint need them.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf $(DEMO_LOGS) $(DEMO_LOGS)-200k   # the last demo's runs: a second demo would train _3 and _4 beside them
	for agent in $(DEMO_AGENTS); do $(VENV)/bin/dimattn train --agent $$agent $(DEMO_ARGS) || exit 1; done
	$(VENV)/bin/dimattn report $(DEMO_LOGS) --out $(DEMO_LOGS)/report --reps 200 --quiet
	@echo "next: source $(VENV)/bin/activate   (puts dimattn on your PATH), then e.g. dimattn --help"
	$(VENV)/bin/dimattn train $(DEMO_COMPARE_RUN) --log-folder $(DEMO_LOGS)-200k
	$(VENV)/bin/dimattn compare $(DEMO_LOGS)-200k --out $(DEMO_LOGS)-200k/compare --reps 200

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .


clean:
	rm -rf $(VENV) demo-logs demo-logs-200k .pytest_cache
