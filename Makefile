# Development tasks. Everything runs from the repo's .venv; the servers (Kafka, PostgreSQL)
# are local processes started by scripts/services.sh (see that script), their environment
# in .run/env.
#
#   make install    .venv with the project and its dev extras (again when pyproject.toml changes)
#   make services   start Kafka (127.0.0.1:39092) and PostgreSQL (127.0.0.1:45432)
#   make stop       stop them
#   make test       install, services, lint, then pytest (PYTEST_ARGS=... to pass more)
#   make unit       pytest -m "not servers", no servers needed
#   make run        services, then the worker in the foreground (Ctrl-C stops the worker only)
#   make lint / fmt / migrate / topics / bench / smoke / reset-services

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
RUN_DIR ?= .run
ENV_FILE := $(RUN_DIR)/env
# Runs the rest of the command line with the servers' environment.
WITH_ENV := . $(ENV_FILE) &&
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help venv install services stop status env migrate topics run lint test unit bench \
	fmt smoke reset-services

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------- environment

venv install: $(STAMP)

# Reinstalled when pyproject.toml is newer than the stamp (or .venv is gone).
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

services:
	bash scripts/services.sh up

stop:
	bash scripts/services.sh down

status:
	@bash scripts/services.sh status

env:
	@bash scripts/services.sh env

reset-services: ## stop and delete Kafka's and PostgreSQL's data
	bash scripts/kafka.sh reset
	bash scripts/postgres.sh reset

# ---------------------------------------------------------------- the worker

migrate: install services
	$(WITH_ENV) $(PY) -m worker migrate

topics: install services
	$(WITH_ENV) $(PY) -m worker create-topics

# `run` migrates and creates the topics itself. exec: the worker gets make's signals.
run: install services
	$(WITH_ENV) exec $(PY) -m worker run

bench: install services
	$(WITH_ENV) $(PY) -m bench $(BENCH_ARGS)

# ---------------------------------------------------------------- checks

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# pytest's exit code is also left in $(RUN_DIR)/pytest-exit-code (.ci/run reads it).
test: install services lint
	@rc=0; $(WITH_ENV) $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	echo $$rc > $(RUN_DIR)/pytest-exit-code; exit $$rc

unit: install
	$(PY) -m pytest -m "not servers" $(PYTEST_ARGS)

# The servers themselves: big records, transactions, asyncpg (scripts/smoke_services.py).
smoke: install services
	$(WITH_ENV) $(PY) scripts/smoke_services.py
