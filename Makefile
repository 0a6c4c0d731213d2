# Two commands matter: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-redis demo test lint typecheck format worker worker-verbose worker-all worker-cleanup \
	queue-info queue-health api sample clean bench runtime-lock

$(STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	# the API client (the CLI's --api mode uses it); its dependencies are already in the lock
	$(PY) -m pip install --quiet --no-deps ./clients/python
	touch $(STAMP)

install: $(STAMP) install-redis

# redis-server runs the tests and the demo on a free loopback port; install it when missing.
install-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: run 'sudo apt-get install redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS), then retry." >&2; exit 1; fi; }

demo: install
	$(PY) -m scripts.demo

test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

typecheck:
	$(PY) -m mypy

worker: install
	$(PY) workers.py --queue normalization

worker-verbose: install
	$(PY) workers.py --queue normalization --verbose

# both queues: a normalization worker and the maintenance worker (reconciler), stopped together
worker-all: install
	$(PY) workers.py --queue maintenance & $(PY) workers.py --queue normalization; kill $$! 2>/dev/null; wait

worker-cleanup: install
	$(PY) workers.py --queue maintenance

queue-info: install
	$(PY) -m src.cli queue-info

queue-health: install
	$(PY) -m src.cli queue-health

# 127.0.0.1 unless asked (`make api HOST=0.0.0.0`): with no token, development is open to anyone
HOST ?= 127.0.0.1
api: install
	$(PY) -m uvicorn --factory src.api.main:app_from_env --host $(HOST) --port 8000

sample: install
	$(PY) scripts/generate_sample.py --rows 1000 --out data/sample_appointments.xlsx

# The full benchmarks behind docs/benchmarks.md (about an hour, figures in var/bench/; the peers
# are installed in their own venv, var/bench-peers-venv). `make test` runs their smoke modes only.
# bench.compare exits 1 when a speed gate fails; its figures are written all the same, and the
# leading `-` lets the other benchmarks run.
bench: install
	mkdir -p var/bench
	-$(PY) -m bench.compare --reps 3 --json var/bench/compare.json --chart docs/img/bench-compare.png
	$(PY) -m bench.scaling --json var/bench/scaling.json
	$(PY) -m bench.latency_trace --json var/bench/latency_trace.json
	$(PY) -m bench.enqueue --jobs 50000 --json var/bench/enqueue.json
	$(PY) -m bench.import50k --rows 50000 --json var/bench/import50k.json
	$(PY) -m bench.store --json var/bench/store.json
	$(PY) -m bench.llm_mode --json var/bench/llm_mode.json
	$(PY) -m bench.llm_client_cpu --json var/bench/llm_client_cpu.json
	$(PY) -m bench.loadtest --json var/bench/loadtest.json
	$(PY) -m bench.lifecycle --json var/bench/lifecycle.json

# regenerate the image's runtime lock after any change to requirements.lock
runtime-lock: install
	$(PY) -m tests.deploy.runtime_lock > deploy/requirements-runtime.lock.new
	mv deploy/requirements-runtime.lock.new deploy/requirements-runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
