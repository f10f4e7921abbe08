# `make demo` and `make test` work from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test fresh lint typecheck check bench screenshots clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "underway needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/underway demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests as a newcomer runs them: a clean clone of HEAD and a new virtual environment
# (the newest dependency releases within the declared ranges). Commit first.
fresh:
	@dir=$$(mktemp -d) && git clone -q . "$$dir/clone" && echo "fresh clone in $$dir/clone" && \
	  $(MAKE) -C "$$dir/clone" test PYTHON=$(PYTHON) && rm -rf "$$dir"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

# mypy strict on src and tests: the files and options of [tool.mypy] in pyproject.toml.
typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.jobs_sqlite

# The README's dashboard images: the browser test drives Debian's chromium (apt-get install
# chromium, or set UNDERWAY_CHROMIUM) and saves its screenshots here.
screenshots: $(STAMP)
	UNDERWAY_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q \
	  tests/acceptance/test_dashboard_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
