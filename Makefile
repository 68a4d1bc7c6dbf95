# Two entry points: `make run` (install + serve on the embedded default) and `make test`
# (install + the whole suite with its quality gates). Both are idempotent.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make-stamps

.PHONY: run test system system-test lint typecheck pytest bench clean

run: system $(STAMPS)/venv
	$(BIN)/adbtd serve

test: system-test $(STAMPS)/venv-test lint typecheck pytest

system:
	@bash scripts/install-system.sh

system-test:
	@bash scripts/install-system.sh --test

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(STAMPS)/venv-test: pyproject.toml $(STAMPS)/venv
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

lint: $(STAMPS)/venv-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMPS)/venv-test
	$(BIN)/mypy

pytest: $(STAMPS)/venv-test
	$(BIN)/pytest -p no:cacheprovider

bench: $(STAMPS)/venv-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(STAMPS) var
