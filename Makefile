# The two quickstart commands (`make demo`, `make test`) work on a fresh machine with only
# Python 3.11+: each creates .venv and installs pinned dependencies when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m schemahub.demo

test: lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	cd bench && ../$(BIN)/python transform.py
	cd bench && ../$(BIN)/python query.py
	cd bench && ../$(BIN)/python cloud.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
