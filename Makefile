# Developer entry points. Each target says what it does: run `make help`.
.DEFAULT_GOAL := help
SHELL := /bin/bash
ARGS ?=

.PHONY: help venv services run test lint bench mutate

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-9s %s\n", $$1, $$2}'

venv: ## Create .venv and install the project (again only when pyproject.toml changed)
	@bash scripts/venv.sh

services: ## Start local PostgreSQL and Redis if they are down
	@bash scripts/services.sh

run: ## Run on SQLite + in-process cache with demo data and a subscription worker; prints a token
	@bash scripts/run.sh $(ARGS)

test: ## Run the checks, then every test against real PostgreSQL and Redis (ARGS="-k cache -x")
	@bash scripts/test.sh $(ARGS)

mutate: venv ## Mutation testing of the safety modules, table + survivors; fails below thresholds (ARGS="--only access")
	.venv/bin/python -m tests.tools.mutate $(ARGS)

lint: ## ruff check, ruff format --check, mypy on app/ and the import-layer contracts
	@bash scripts/checks.sh

bench: venv services ## Benchmark the production stack; A/B against a commit: ARGS="--baseline REF"
	@.venv/bin/python -c 'import psutil' 2>/dev/null || \
		.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -e '.[test,bench]'
	.venv/bin/python -m benchmarks.run $(ARGS)
