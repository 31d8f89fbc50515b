# One place for the project's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
# jsii (the CDK's Node bridge) prints a banner about Node 20 on every synth; it is noise here.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
# No AWS account here: never wait on the EC2 metadata service for credentials.
export AWS_EC2_METADATA_DISABLED := true

PY := .venv/bin/python
CDK := node_modules/.bin/cdk
SUFFIX ?= dev
DEMO_MB ?= 160

.PHONY: help install test test-fast lint synth deploy destroy demo bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## Install everything from the lock files (uv + Python deps, CDK CLI + csv-spectrum)
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	python3 -m uv sync --frozen
	npm ci --no-audit --no-fund --loglevel=error

test: install ## Run every test (unit, property, infra, end-to-end)
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: ## Unit + property tests only, without reinstalling
	$(PY) -m pytest tests/unit tests/property -q

lint: install ## ruff, mypy, and the Python 3.9 floor of the Lambda code
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy etl infra etl_local etl_cli benchmarks app.py
	.venv/bin/vermin -t=3.9- --no-tips --violations etl

synth: install ## Synthesize both stacks (no AWS account needed): make synth SUFFIX=pr42
	$(CDK) synth -c environmentSuffix=$(SUFFIX) --quiet

deploy: install ## Deploy both stacks to your AWS account (needs credentials + cdk bootstrap)
	$(CDK) deploy --all -c environmentSuffix=$(SUFFIX) --require-approval broadening

destroy: install ## Delete both stacks and everything in them
	$(CDK) destroy --all -c environmentSuffix=$(SUFFIX) --force

demo: install ## The main job: generate a realistic file and run it through the local pipeline
	.venv/bin/etl local demo --size-mb $(DEMO_MB)

bench: install ## Benchmarks (PERF1-3); results go to docs/benchmarks.md by hand
	$(PY) benchmarks/bench_scan.py
	$(PY) benchmarks/bench_process.py

clean: ## Remove build outputs and local emulator state
	rm -rf cdk.out .etl-local .pytest_cache .mypy_cache .ruff_cache
