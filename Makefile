# The README's two commands are `make run` and `make test`; both set everything up first.
SHELL := /bin/bash
ROOT := $(CURDIR)
# Everything the tools write stays inside the project.
export PATH := $(ROOT)/.venv/bin:$(PATH)
export DAGSTER_HOME := $(ROOT)/.dagster
export HF_HOME := $(ROOT)/.cache/huggingface
export TORCH_HOME := $(ROOT)/.cache/torch
export DVC_SITE_CACHE_DIR := $(ROOT)/.dvc/site-cache
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

# pytest-xdist workers for `make test`; tests of one file stay on one worker (their fixtures are built once).
# On 2 cores, 2 workers took the suite from 13 min 54 s to 10 min 6 s (one run each, same machine), but
# one 2-worker run lost a line of test_pipeline_command's stderr check (not yet understood): 0 = serial.
TEST_WORKERS ?= 0

.PHONY: setup run test repro ui bench clean

setup:             ## create .venv (project) and .venv-dvc (DVC), install registry assets
	@bash scripts/setup.sh

run: setup         ## the main job on the embedded default, through Dagster
	gleam pipeline
	@# record the outputs in DVC's cache (~5 s): `dvc repro` then skips, and dvc.lock changes only
	@# where an output differs from the committed run's bytes
	dvc commit -f -q

test: setup        ## the test suite (first installs Debian's Chromium for the browser test, as root)
	@bash scripts/install_browser.sh || [ "$${CI:-}" != true ]
	pytest -q -n $(TEST_WORKERS) --dist loadfile

repro: setup       ## the same stages through DVC
	dvc repro

ui: setup          ## the Dagster UI on http://127.0.0.1:3000
	dagster dev -h 127.0.0.1 -p 3000

bench: setup       ## throughput benchmarks (tables printed, JSON under reports/benchmarks/)
	python benchmarks/train_throughput.py --manifest data/validated/manifest.parquet --base-dir . --out reports/benchmarks/train_throughput.json

clean:             ## remove pipeline outputs (not the environments)
	rm -rf data models reports .dagster .cache
