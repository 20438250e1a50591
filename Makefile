# The commands the README tells the data team to run. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR)/include
export GX_ANALYTICS_ENABLED := False

.PHONY: demo test lint bench soak airflow-ui install clean

$(BIN)/.installed: requirements.txt requirements-local.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# The browser tests (tests/ui) drive Debian's Chromium: Playwright's own browser download is not used.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "need Chromium at $(CHROMIUM) (Debian: apt-get install chromium)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Access files (.mdb/.accdb) of commune tools are read with Debian's mdbtools.
MDBTOOLS := /usr/bin/mdb-json
$(MDBTOOLS):
	@command -v apt-get >/dev/null 2>&1 || { echo "need mdbtools at $(MDBTOOLS) (Debian: apt-get install mdbtools)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mdbtools

install: $(BIN)/.installed $(CHROMIUM) $(MDBTOOLS)  ## create .venv with everything, Chromium for the browser tests, mdbtools for Access files

demo: install  ## the nightly sync end to end on embedded services
	$(BIN)/python -m sapnhap_dev demo $(ARGS)

test: install  ## lint, then the whole test suite (unit, DAG integrity, integration on real services)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

lint: install
	$(BIN)/ruff check .

# One run, same generated legacy sources: raw COPY, dlt, the naive pipeline, sapnhap in-process and the
# nightly DAG under the scheduler + LocalExecutor, full and incremental. ARGS="--size mid" (~10 min),
# ARGS="--quick" (CI-like), default 5M + 5M rows over 300 sources; results in bench/RESULTS.md.
bench: install  ## the benchmark table of issue 12 (not part of the tests)
	$(BIN)/python bench/bench_pipeline.py $(ARGS)

soak: install  ## N nights of legacy changes and injected faults, then verify/report/restore checks (docs/soak.md)
	$(BIN)/python bench/soak.py $(ARGS)

airflow-ui: install  ## the Airflow UI on the demo's world, with the Sáp nhập pages (services stay up until Ctrl-C)
	$(BIN)/python -m sapnhap_dev ui $(ARGS)

clean:
	rm -rf .sapnhap
