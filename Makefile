# One entry point for everything a developer or reviewer runs. `make test` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHECKOV := .venv-checkov/bin/checkov

.PHONY: help install run demo lint format test unit peers bench clean

help:
	@echo "make run     the app on http://127.0.0.1:7071 with local Twilio and Storage peers"
	@echo "make demo    show the running app at work (run it beside make run)"
	@echo "make test    install what is missing, lint, type-check, run every test"
	@echo "make lint    ruff (lint and format check) and mypy"
	@echo "make unit    unit tests only: pure logic, no peers (pytest -m unit)"
	@echo "make peers   the tests that start local peers or processes (pytest -m peers)"
	@echo "             ARGS=... is passed to pytest by test, unit and peers, e.g. ARGS=-x"
	@echo "make bench   benchmarks under bench/"

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
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

bench: $(PY_STAMP) $(NODE_STAMP)
	$(PY) bench/webhooks.py
	$(PY) bench/connections.py
	$(PY) bench/outbound.py
	$(PY) bench/stack_startup.py

clean:
	rm -rf $(VENV) .venv-checkov node_modules .pytest_cache .mypy_cache .ruff_cache
