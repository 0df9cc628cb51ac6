# The newcomer's commands. Each sets up its own virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# xdist workers for the main suite: its tests mostly wait on processes and services, so three
# beat two on a 2-core machine (docs/decisions/parallel-tests.md). `make test TEST_WORKERS=1`.
TEST_WORKERS ?= 3

.PHONY: run test chaos lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) ## Start Weir standalone (SQLite + in-process queue) with the example DAGs
	$(BIN)/weir standalone --dags-folder examples/dags

test: $(STAMP) ## Lint, type-check, the main suite in parallel, then the chaos suite serially
	$(BIN)/ruff check weir app workers tests bench
	$(BIN)/ruff format --check weir app workers tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 --ignore=tests/chaos
	$(MAKE) --no-print-directory chaos

# Serially and alone: chaos tests kill processes and time recoveries. Until tests/chaos has a test
# file there is nothing to run (pytest would exit 5); once it has one, collecting nothing fails.
chaos: $(STAMP) ## Only the chaos suite (tests/chaos), serially
	@if [ -n "$$(find tests/chaos -name 'test_*.py' 2>/dev/null)" ]; then \
		echo "$(BIN)/pytest tests/chaos"; $(BIN)/pytest tests/chaos; \
	else echo "tests/chaos has no test files yet: no chaos suite to run."; fi

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

bench: $(STAMP) ## Speed, CPU/task, memory, idle CPU on both backends vs goals and the bound; bench/results/
	$(BIN)/python -m bench $(BENCH_ARGS)

# Installs Apache Airflow from the package registry into bench/.peers/airflow-venv on first use
# (pinned by bench/peers/requirements-airflow.txt; a few minutes), reused afterwards.
.PHONY: bench-peers
bench-peers: $(STAMP) ## Airflow 3 and Weir on the same shapes and PostgreSQL, side by side; bench/results/
	$(BIN)/python -m bench.peers

.PHONY: bench-api-lists bench-dashboard
bench-api-lists: $(STAMP) ## REST lists on 100,000 runs (PostgreSQL + RabbitMQ); writes bench/results/
	$(BIN)/python -m bench api-lists

bench-dashboard: $(STAMP) ## Dashboard pages with 1,000 DAGs, 100,000 task instances; bench/results/
	$(BIN)/python -m bench dashboard-pages

clean:
	rm -rf $(VENV) .weir .pytest_cache .mypy_cache .ruff_cache
