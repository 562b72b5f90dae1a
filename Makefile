# Kizuna — two commands on a fresh machine: `make test` and `make up`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINTED := $(wildcard libs services tests bench)

.PHONY: test up install lint typecheck bench soak rebuild clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Headless Chromium for the dashboard's end-to-end test (Debian's package; skipped where apt is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

## Installs what it needs, then runs lint, types and the whole suite against real NATS and PostgreSQL.
test: $(STAMP) browser
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy libs services bench
	$(PY) -m pytest -q

## Starts NATS JetStream, PostgreSQL and every service; seeds a demo; prints the URLs. Ctrl-C stops all.
up: $(STAMP)
	$(PY) -m kizuna.up

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy libs services bench

## Replays a service's events into a fresh read model: make rebuild SERVICE=members
rebuild: $(STAMP)
	$(PY) -m kizuna.rebuild $(SERVICE)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench

## The reliability suite at long settings (make test runs the same tests short).
soak: $(STAMP)
	KIZUNA_FAULT_WRITES=2000 KIZUNA_FUZZ_EXAMPLES=100 KIZUNA_NATS_OUTAGE_SECONDS=30 KIZUNA_PG_OUTAGE_SECONDS=20 \
	  KIZUNA_DUPLICATE_FLOOD=50 KIZUNA_PROPERTY_EXAMPLES=1000 KIZUNA_CONVERGENCE_TIMEOUT=300 \
	  $(PY) -m pytest -q tests/reliability

clean:
	rm -rf $(VENV) .kizuna .pytest_cache .mypy_cache .ruff_cache
