# The two commands of the README's quick start: `make serve` and `make test`.
# Each creates the virtualenv (.venv) on first use and installs what it needs, and no more:
#   serve  the package with the `speed` extra (uvloop)
#   test   that plus the `test` extra (pytest, ruff, mypy, interop libraries)
#   bench  that plus the `bench` extra (the servers compared against)
#   screenshots  that plus the `screenshots` extra (Playwright, driving Debian's chromium)
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
SHOTS_STAMP := $(VENV)/.stamp-screenshots
PIP_INSTALL := $(BIN)/python -m pip install --quiet

.PHONY: serve test lint pytest bench screenshots clean

serve: $(SERVE_STAMP)
	$(BIN)/relaychat serve $(ARGS)

test: lint pytest

pytest: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench examples docs
	$(BIN)/ruff format --check src tests bench examples docs
	$(BIN)/mypy

bench: $(BENCH_STAMP)
	$(BIN)/python bench/compare.py $(ARGS)

# docs/img/*.png for the README (needs tmux and chromium: apt-get install tmux chromium)
screenshots: $(SHOTS_STAMP)
	$(BIN)/python docs/screenshots.py $(ARGS)

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

$(SHOTS_STAMP): $(SERVE_STAMP)
	$(PIP_INSTALL) -e '.[speed,screenshots]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
