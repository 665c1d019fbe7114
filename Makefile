# The two README commands: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepfit-installed
# Single-threaded torch in tests: two cores, and oversubscription stalls torch for seconds.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: setup demo test test-all bench-env clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt 'torch==2.13.0'
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/deepfit demo

test: setup
	$(TEST_ENV) $(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(TEST_ENV) $(BIN)/python -m pytest -q

bench-env:
	bash bench/setup_env.sh

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
