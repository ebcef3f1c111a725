# RecLoop developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install demo test test-all lint format bench kafka-jars clean

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

test: install kafka-jars ## the default test suite (real brokers, no slow or benchmark tests)
	$(BIN)/pytest -m "not slow and not benchmark and not known_defect" $(PYTEST_ARGS)

test-all: install kafka-jars
	$(BIN)/pytest $(PYTEST_ARGS)

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
