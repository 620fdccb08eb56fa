# One entry point for everything a developer or reviewer runs. `make test` first.
SHELL := /bin/bash
# .python-version selects the app's Python (3.13) for pyenv; its second line keeps 3.11 at
# hand for Checkov, which pins packages that have no 3.13 builds, and for make bench-311.
PYTHON ?= python3
PYTHON311 ?= python3.11
PY311 := .venv-py311/bin/python
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHECKOV := .venv-checkov/bin/checkov

.PHONY: help install run demo lint format test unit peers bench bench-311 clean

help:
	@echo "make run     the app on http://127.0.0.1:7071 with local Twilio and Storage peers"
	@echo "make demo    show the running app at work (run it beside make run)"
	@echo "make test    install what is missing, lint, type-check, run every test"
	@echo "make lint    ruff (lint and format check) and mypy"
	@echo "make unit    unit tests only: pure logic, no peers (pytest -m unit)"
	@echo "make peers   the tests that start local peers or processes (pytest -m peers)"
	@echo "             ARGS=... is passed to pytest by test, unit and peers, e.g. ARGS=-x"
	@echo "make bench   benchmarks under bench/"
	@echo "make bench-311  webhook cold start on Python 3.13 beside 3.11, each against its floor"

$(PY_STAMP): requirements.txt requirements-dev.txt .python-version
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV): requirements-checkov.txt
	$(PYTHON311) -m venv --clear .venv-checkov
	.venv-checkov/bin/pip install --quiet --upgrade pip
	.venv-checkov/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

install: $(PY_STAMP) $(NODE_STAMP) $(CHECKOV)

run: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m devhost.stack $(ARGS)

demo: $(PY_STAMP)
	$(PY) -m devhost.demo

lint: $(PY_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(PY_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install lint
	$(PY) -m pytest $(ARGS)

unit: $(PY_STAMP)
	$(PY) -m pytest -m unit $(ARGS)

peers: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m pytest -m peers $(ARGS)

# The app on Python 3.11 for comparison only: the 3.13-only runtime pin left out, and the
# programming model's 1.x line, the one for 3.10 to 3.12.
$(PY311): requirements.txt
	$(PYTHON311) -m venv --clear .venv-py311
	grep -v '^azure-functions' requirements.txt > .venv-py311/requirements.txt
	.venv-py311/bin/pip install --quiet 'azure-functions>=1.21,<2' -r .venv-py311/requirements.txt
	touch $@

bench-311: $(PY_STAMP) $(PY311)
	$(PY) bench/webhooks.py --compare $(PY311)

bench: $(PY_STAMP) $(NODE_STAMP)
	$(PY) bench/webhooks.py
	$(PY) bench/sms_rules.py
	$(PY) bench/connections.py
	$(PY) bench/outbound.py
	$(PY) bench/events.py
	$(PY) bench/cold_secrets.py
	$(PY) bench/quiet_hours.py
	$(PY) bench/stack_startup.py

clean:
	rm -rf $(VENV) .venv-checkov .venv-py311 node_modules .pytest_cache .mypy_cache .ruff_cache
