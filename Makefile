# The newcomer's commands. Each sets up its own virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) ## Start Weir standalone (SQLite + in-process queue) with the example DAGs
	$(BIN)/weir standalone --dags-folder examples/dags

test: $(STAMP) ## Lint, type-check and run the whole test suite
	$(BIN)/ruff check weir app workers tests bench
	$(BIN)/ruff format --check weir app workers tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check weir app workers tests bench
	$(BIN)/ruff format --check weir app workers tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format weir app workers tests bench
	$(BIN)/ruff check --fix weir app workers tests bench

.PHONY: openapi
openapi: $(STAMP) ## Regenerate docs/openapi.json from the app (CI runs it with --check)
	$(BIN)/python -m app.api.openapi_export

bench: $(STAMP) ## Throughput and latency on both backends; prints a table, writes bench/results/
	$(BIN)/python -m bench

.PHONY: bench-api-lists bench-dashboard
bench-api-lists: $(STAMP) ## REST lists on 100,000 runs (PostgreSQL + RabbitMQ); writes bench/results/
	$(BIN)/python -m bench api-lists

bench-dashboard: $(STAMP) ## Dashboard pages with 1,000 DAGs, 100,000 task instances; bench/results/
	$(BIN)/python -m bench dashboard-pages

clean:
	rm -rf $(VENV) .weir .pytest_cache .mypy_cache .ruff_cache
