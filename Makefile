# The two commands of the README's quick start: `make serve` and `make test`.
# Each creates the virtualenv (.venv) on first use and installs what it needs, and no more:
#   serve  the package with the `speed` extra (uvloop)
#   test   that plus the `test` extra (pytest, ruff, mypy, interop libraries)
#   bench  that plus the `bench` extra (the servers compared against)
# One stamp file per set, so `make serve` after `make test` installs nothing and
# `make test` after `make serve` only adds the test tools. Editing pyproject.toml
# reinstalls on the next run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.stamp-venv
SERVE_STAMP := $(VENV)/.stamp-serve
TEST_STAMP := $(VENV)/.stamp-test
BENCH_STAMP := $(VENV)/.stamp-bench
PIP_INSTALL := $(BIN)/python -m pip install --quiet

.PHONY: serve test lint pytest bench clean

serve: $(SERVE_STAMP)
	$(BIN)/relaychat serve $(ARGS)

test: lint pytest

pytest: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

bench: $(BENCH_STAMP)
	$(BIN)/python bench/compare.py $(ARGS)

$(VENV_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "relaychat needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	touch $@

$(SERVE_STAMP): pyproject.toml $(VENV_STAMP)
	$(PIP_INSTALL) -e '.[speed]'
	touch $@

$(TEST_STAMP): $(SERVE_STAMP)
	$(PIP_INSTALL) -e '.[speed,test]'
	touch $@

$(BENCH_STAMP): $(SERVE_STAMP)
	$(PIP_INSTALL) -e '.[speed,bench]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
