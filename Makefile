# RecLoop developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on brokers, workers and browsers, not on the CPU;
# tests/conftest.py keeps each module, and each trained-model fixture, in one process.
PYTEST_JOBS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_JOBS) --dist loadgroup
BENCH_ARGS ?=

.PHONY: install demo test test-faults test-all lint format bench kafka-jars clean

$(BIN)/recloop: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $(BIN)/recloop

install: $(BIN)/recloop  ## virtualenv with runtime, training and test dependencies

kafka-jars: install      ## fetch the Apache Kafka broker jars from Maven Central (cached)
	$(BIN)/recloop broker --kind kafka --fetch-only

demo: install            ## the whole loop on the embedded broker, with a report at the end
	$(BIN)/recloop demo

DEFAULT_TESTS := not slow and not benchmark and not known_defect

test: install kafka-jars ## the default test suite (real brokers, no slow or benchmark tests)
	$(PYTEST) -m "$(DEFAULT_TESTS) and not alone" $(PYTEST_ARGS)
	$(BIN)/pytest -m "$(DEFAULT_TESTS) and alone" $(PYTEST_ARGS)  # one process, nothing beside

test-faults: install kafka-jars ## the slow fault-injection tests (SIGKILLs, broker restart, overload, soak)
	$(PYTEST) -m "slow and fault" $(PYTEST_ARGS)

test-all: install kafka-jars ## everything: the default suite, the slow suites and the benchmarks' tests
	$(PYTEST) $(PYTEST_ARGS)

bench: install kafka-jars ## every benchmark beside its same-run baseline on Apache Kafka (~5 min)
	$(BIN)/python scripts/bench_all.py $(BENCH_ARGS)  # JSON in benchmarks/results/; README table

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) artifacts reports .pytest_cache
