# Two commands on a fresh machine: `make run` (dashboard) and `make test` (whole test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Who can open the dashboard: this machine only. A lab server sets ADDRESS=0.0.0.0 (README: anyone who
# reaches the port then uses it, its folder boxes included), best behind a proxy that asks for a login.
ADDRESS ?= localhost
export OMP_NUM_THREADS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export GLOG_minloglevel ?= 2

.PHONY: run test venv dev-venv browser data au-model bench clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements-jax.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/jax-site -r requirements-jax.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

## Start the dashboard on the bundled models (installs what it needs on first run).
run: $(VENV)/.runtime
	$(PY) -c "from pathlib import Path; from fer_core.i18n import install_browser_font; install_browser_font(Path('static'))"
	$(PY) -m ui.launch --server.port $(PORT) --server.address $(ADDRESS) --server.headless true

## Run the whole test suite: lint, then pytest (installs test dependencies and Debian's chromium when missing).
test: $(VENV)/.dev browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=30 $(PYTEST_ARGS)

## Debian's chromium for the end-to-end test; skipped quietly when it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

DATASETS ?= ../shared/datasets
## Regenerate the derived AU tables of FER2013 (needs the images; about 5 minutes on 2 cores).
data: $(VENV)/.runtime
	$(PY) -m fer_core extract $(DATASETS)/fer2013/train --out data/fer2013_train_au.csv.gz
	$(PY) -m fer_core extract $(DATASETS)/fer2013/val --out data/fer2013_val_au.csv.gz

## Retrain the bundled AU models from the derived table (no images needed).
au-model: $(VENV)/.runtime
	$(PY) -m fer_core train-au data/fer2013_train_au.csv.gz --out models/au_logreg_fer2013.json --name au-logreg-fer2013
	$(PY) -m fer_core train-au data/fer2013_train_au.csv.gz --out models/au_logreg_fer2013_balanced.json --class-weight balanced --name au-logreg-fer2013-balanced
	$(PY) -m fer_core train-au data/fer2013_train_au.csv.gz --out models/au_logreg_upper_fer2013.json --aus upper --name au-logreg-upper-fer2013

## Speed and accuracy tables (minutes; not part of the tests). CNN training: bench/train_cnn_bench.py.
bench: $(VENV)/.dev
	$(PY) bench/extract_speed.py
	$(PY) bench/au_model_accuracy.py
	$(PY) bench/reproduce_original.py
	$(PY) bench/cross_backend.py
	$(PY) bench/model_throughput.py
	$(PY) bench/dashboard_timings.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
