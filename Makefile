PYTHON ?= python3
export PYTHONPATH := $(CURDIR)/src

.PHONY: run test setup check lint typecheck unit bench

# Sets everything up and runs the stack end to end on its default network.
run: setup
	$(PYTHON) -m vipernet.cli.main demo

# Installs what the tests need, then runs the whole suite (lint and types first).
test: setup
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q

setup:
	bash scripts/setup.sh

lint:
	$(PYTHON) -m ruff check src tests benchmarks

typecheck:
	$(PYTHON) -m mypy

check: lint typecheck

# The tests that need no root, namespace or peer.
unit:
	$(PYTHON) -m pytest -q -m "not testbed"

bench:
	for b in benchmarks/*.py; do $(PYTHON) $$b || exit 1; done
