# Two commands a newcomer needs: `make up` (run everything on the embedded
# default) and `make test` (install what the tests need and run them).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/is-embedded

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Ours beside Celery 5 on this machine (Redis on 127.0.0.1:6379); the table
# goes to bench/results/latest.md. BENCH_ARGS=--quick tries the harness.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .isdata
