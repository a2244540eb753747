# The two quickstart commands (`make demo`, `make test`) work on a fresh machine with only
# Python 3.11+: each creates .venv and installs pinned dependencies when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHECKOV := $(VENV)/checkov/bin/checkov

.PHONY: demo test lint typecheck gates docs unit bench image clean

$(STAMP): pyproject.toml constraints.txt
	@echo "installing SchemaHub and its pinned dependencies into $(VENV) (first run only; a few minutes)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# checkov pins its own dependencies (boto3 among them) to versions that clash with ours:
# it lives in its own virtualenv inside .venv.
$(CHECKOV): constraints-checkov.txt | $(STAMP)
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-checkov.txt checkov
	touch $(CHECKOV)

demo: $(STAMP)
	$(BIN)/python -m schemahub.demo

test: lint typecheck gates docs
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The Python API's reference, generated from the docstrings into docs/api/ (open
# docs/api/index.html). -W error: a warning (a name that does not resolve, ...) fails the build.
API_MODULES := schemahub schemahub.api schemahub.query.export schemahub.errors schemahub.ingest.report \
	schemahub.transform.report schemahub.quality.certificates schemahub.quality.checks \
	schemahub.quality.options schemahub.routine schemahub.settings
docs: $(STAMP)
	rm -rf docs/api
	$(BIN)/python -W error -m pdoc --docformat restructuredtext --output-directory docs/api $(API_MODULES)

# Deployment lint: the Dockerfile (hadolint, checkov) and terraform/ (checkov; the python-hcl2
# parse and reference checks are tests in tests/deploy). --skip-download: no network.
gates: $(STAMP) $(CHECKOV)
	$(BIN)/hadolint Dockerfile
	$(CHECKOV) --quiet --compact --skip-download --framework terraform --directory terraform
	$(CHECKOV) --quiet --compact --skip-download --framework dockerfile --file Dockerfile

# The container image (docker, or podman: CONTAINER=podman).
CONTAINER ?= docker
image:
	$(CONTAINER) build --tag schemahub:latest .

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	cd bench && ../$(BIN)/python transform.py
	cd bench && ../$(BIN)/python query.py
	cd bench && ../$(BIN)/python cloud.py
	cd bench && ../$(BIN)/python archive.py
	cd bench && ../$(BIN)/python certify.py
	cd bench && ../$(BIN)/python api.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
