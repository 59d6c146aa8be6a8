# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench lint
PACKAGES = gateway devices wallet simulators

$(BIN)/kym: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/kym  ## devices paying through the gateway on embedded defaults
	$(BIN)/kym demo

test: $(BIN)/kym  ## the whole suite (PostgreSQL and Mosquitto tests skip locally if absent)
	$(BIN)/pytest

bench: $(BIN)/kym
	$(BIN)/python benchmarks/ledger_bench.py

lint: $(BIN)/kym  ## ruff, the formatter's check, mypy --strict on the packages and the tests
	$(BIN)/ruff check $(PACKAGES) tests benchmarks
	$(BIN)/ruff format --check $(PACKAGES) tests benchmarks
	$(BIN)/mypy --strict $(PACKAGES) benchmarks tests
