# The traffic allocation service. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv protos check-protos demo serve test test-cluster lint interop fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml clients/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e './clients[report]' -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## make .venv with the pinned dependencies

protos: $(STAMP) ## regenerate clients/trafficalloc from protos/
	$(PY) scripts/gen_protos.py

check-protos: protos ## fail if the committed generated code is stale
	git diff --exit-code -- clients/trafficalloc

demo: $(STAMP) ## run a realistic day end to end on an embedded Redis, then shut down
	$(PY) -m allocator.demo

serve: $(STAMP) ## run the server in the foreground (embedded Redis unless ALLOCATOR_REDIS_URL is set)
	$(PY) -m allocator.server

test: $(STAMP) ## run the unit and integration tests
	$(PY) -m pytest -q

test-cluster: $(STAMP) ## the integration tests on a local 3-master Redis Cluster (scripts/redis_cluster.py)
	$(PY) scripts/redis_cluster.py --masters 3 -- $(PY) -m pytest -q tests/integration tests/unit/test_cluster_slots.py

lint: $(STAMP) ## ruff and mypy on hand-written code, buf lint on protos/ (buf.yaml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy allocator clients/allocator_client bench
	clients/node/install.sh
	clients/node/node_modules/.bin/buf lint

interop: $(STAMP) ## the Node.js client (clients/node) against a real server, every RPC of the flow
	PYTHON_BIN=$(PY) clients/node/run-interop.sh

fmt: $(STAMP) ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) ## the solve benchmark on a 1M-arc instance (prints JSON)
	$(PY) -m bench.solve --merchants 20000 --nodes 5000 --arcs-per-merchant 50 --contention 0.9 --seed 1 --json

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-out var clients/node/node_modules
