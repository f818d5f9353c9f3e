# The user interface of the repository. `make demo` and `make test` set everything up.
SHELL := /bin/bash
UV_VERSION := 0.13.9
VENV := .venv
RUN := $(VENV)/bin
export UV_PYTHON := 3.11

.PHONY: help setup services demo test lint format bench bento clean

UV := python3 -m uv

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --extra bgnbd
	@touch $@

## help: list the targets
help:
	@grep -E '^## [a-z-]+:' $(MAKEFILE_LIST) | sed -E 's/^## ([a-z-]+): /  make \1\t/' | expand -t 16

## setup: create .venv/ with the locked dependencies (idempotent)
setup: $(VENV)/.synced

## services: install redis-server, PostgreSQL and Chromium when missing (as root; tests start them)
services:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "not root: tests needing$$missing will skip (CI=true fails them)"; \
	fi

## demo: the whole pipeline on the embedded Complete Journey data (DEMO_ARGS="--port 3001 ...")
demo: setup
	$(RUN)/python -m crmscore.demo $(DEMO_ARGS)

## test: lint, types and the test suite
test: setup lint services
	$(RUN)/pytest

## lint: ruff (lint + format check) and mypy
lint: setup
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .
	$(RUN)/mypy crmscore features training serving monitoring benchmarks

## format: ruff format and autofix
format: setup
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

## bench: every benchmark (figures go to BENCHMARKS.md by hand)
bench: setup
	$(RUN)/python benchmarks/features.py
	$(RUN)/python benchmarks/training.py
	$(RUN)/python benchmarks/batch.py
	$(RUN)/python benchmarks/serving.py
	$(RUN)/python benchmarks/monitoring.py

## bento: build the API's Bento (code and default configs; [tool.bentoml.build] in pyproject.toml)
bento: setup
	BENTOML_DO_NOT_TRACK=true $(RUN)/bentoml build .

## clean: remove .venv, the workspace and the tool caches
clean:
	rm -rf $(VENV) workspace .pytest_cache .mypy_cache .ruff_cache
