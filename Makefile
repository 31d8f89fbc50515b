# One place for the project's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
# jsii (the CDK's Node bridge) prints an end-of-life banner for old Node majors; it silences it
# only when this lists the running major (infra/node_env.py computes the same for Python).
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := $(shell node -p "process.versions.node.split('.')[0]" 2>/dev/null)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
# No AWS account here: never wait on the EC2 metadata service for credentials.
export AWS_EC2_METADATA_DISABLED := true

PY := .venv/bin/python
CDK := node_modules/.bin/cdk
SUFFIX ?= dev
# Interpreters for `make test-runtimes` (pyenv's, else python3.X on PATH; override: make PY39=...).
find_python = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1) 2>/dev/null))
PY39 ?= $(call find_python,3.9)
PY313 ?= $(call find_python,3.13)
DEMO_MB ?= 160
CHAOS_SCHEDULES ?= 30
CHAOS_SEED ?= 1000

# The pyiceberg layer (DATA7) for this runtime/architecture: cdk.json's defaults unless given.
LAYER_PYTHON ?= $(shell $(PY) -c "import json; print(json.load(open('cdk.json'))['context']['lambdaRuntime'].removeprefix('python'))" 2>/dev/null || echo 3.13)
LAYER_ARCH ?= $(shell $(PY) -c "import json; print(json.load(open('cdk.json'))['context']['architecture'])" 2>/dev/null || echo x86_64)

.PHONY: help install test-deps layer size-budget test test-fast test-runtimes lint complexity mutate synth deploy destroy demo docs bench chaos clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## Install everything from the lock files (uv + Python deps, CDK CLI + csv-spectrum)
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	python3 -m uv sync --frozen
	npm ci --no-audit --no-fund --loglevel=error

test-deps: ## System packages the tests need: Chromium for the HTML report test (Debian; root or sudo)
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version

layer: install ## Build the pyiceberg layer from uv.lock (no Docker; PyPI once, then cached in .build/)
	$(PY) -m infra.iceberg_layer_build --python $(LAYER_PYTHON) --arch $(LAYER_ARCH)
	@# The same recipe for this machine's Python: the copy tests/infra/test_iceberg_layer.py imports.
	$(PY) -m infra.iceberg_layer_build --host

size-budget: layer ## Unzipped size per function (code + layers) against Lambda's 250 MB
	$(PY) -m infra.size_budget

test: install test-deps layer ## Run every test (unit, property, infra, end-to-end)
	@# Two runs: an end-to-end session keeps its emulator (and its scheduled functions) alive in
	@# its worker until the session ends, and must not share a process with the unit tests.
	$(PY) -m pytest -n 2 --dist loadfile --ignore=tests/e2e
	$(PY) -m pytest -n 2 --dist loadfile tests/e2e

test-fast: ## Unit + property tests only, without reinstalling
	$(PY) -m pytest tests/unit tests/property -q

test-runtimes: install ## etl/'s unit + property tests on Python 3.9 (oldest runtime) and 3.13 (default)
	@test -n "$(PY39)" || { echo "python3.9 not found: install it (pyenv install 3.9) or pass PY39=/path/to/python3.9"; exit 1; }
	@test -n "$(PY313)" || { echo "python3.13 not found: install it or pass PY313=/path/to/python3.13"; exit 1; }
	python3 -m uv venv -q --allow-existing .venv-py39 --python $(PY39)
	python3 -m uv pip install -q --python .venv-py39/bin/python -r requirements/runtime-py39.txt
	@# No CDK on 3.9 here: the IAM coverage test synthesizes the stack, it runs on 3.11 and 3.13.
	.venv-py39/bin/python -m pytest tests/unit tests/property -q -n 2 -p no:cacheprovider \
		--ignore=tests/unit/handlers/test_iam_coverage.py
	UV_PROJECT_ENVIRONMENT=.venv-py313 python3 -m uv sync -q --frozen --python $(PY313)
	.venv-py313/bin/python -m pytest tests/unit tests/property -q -n 2 -p no:cacheprovider

lint: install ## ruff (incl. C901 complexity <= 15), mypy (--strict on etl/ and etl_cli/), the Python 3.9 floor of etl/
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy --strict etl etl_cli
	.venv/bin/mypy infra etl_local benchmarks app.py
	.venv/bin/vermin -t=3.9- --no-tips --violations etl

# DX3 gate: ruff's C901 (mccabe, max-complexity 15 in pyproject.toml) runs in `ruff check`, so
# `make lint` fails on any function above 15. This target lists the scores alone.
complexity: ## Functions above cyclomatic complexity 15 (ruff's mccabe, C901) in the Python packages
	.venv/bin/ruff check --select C901 --output-format concise .

mutate: install ## Mutation check: apply tools/mutate.py's mutations to a temp copy, report survivors (~15 min)
	$(PY) tools/mutate.py

synth: install layer ## Synthesize both stacks (no AWS account needed): make synth SUFFIX=pr42
	$(CDK) synth -c environmentSuffix=$(SUFFIX) --quiet

deploy: install layer ## Deploy both stacks to your AWS account (needs credentials + cdk bootstrap)
	$(CDK) deploy --all -c environmentSuffix=$(SUFFIX) --require-approval broadening

destroy: install ## Delete both stacks and everything in them
	$(CDK) destroy --all -c environmentSuffix=$(SUFFIX) --force

demo: install ## The main job: generate a realistic file and run it through the local pipeline
	.venv/bin/etl local demo --size-mb $(DEMO_MB)

docs: install ## Regenerate the README's figures that come from a run (the demo, seed 42; UX9)
	$(PY) tools/readme_blocks.py

bench: install ## Benchmarks (PERF1-5, RUN12): scan, chunk vs peers (DuckDB/Polars/pandas), chunk function + cost, init, memory; results go to docs/benchmarks.md by hand
	$(PY) benchmarks/bench_scan.py
	$(PY) benchmarks/bench_peers.py
	$(PY) benchmarks/bench_chunk_function.py
	$(PY) benchmarks/bench_init.py
	$(PY) benchmarks/bench_process.py
	$(PY) benchmarks/bench_memory.py

chaos: install ## TBL4: many seeded fault schedules on the emulator; prints schedules, faults injected, violations
	set -o pipefail; ETL_CHAOS_SCHEDULES=$(CHAOS_SCHEDULES) ETL_CHAOS_SEED=$(CHAOS_SEED) \
		$(PY) -m pytest tests/e2e/test_chaos.py -k randomized -q -s -p no:cacheprovider 2>&1 \
		| $(PY) tools/chaos_summary.py

clean: ## Remove build outputs and local emulator state
	rm -rf cdk.out .etl-local .build .pytest_cache .mypy_cache .ruff_cache .venv-py39 .venv-py313
