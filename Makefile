# Kizuna — two commands on a fresh machine: `make test` and `make up`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINTED := $(wildcard libs services tests bench)

.PHONY: test up install lint typecheck bench soak rebuild clean browser lock image messages screenshots

# The image's name and tag live in deploy/kubernetes/kustomization.yaml (`images:`); `make image` reads them there.
IMAGE ?= $(shell sed -n '/^images:/,/^[^ ]/{s/^ *newName: *//p}' deploy/kubernetes/kustomization.yaml)
TAG ?= $(shell sed -n '/^images:/,/^[^ ]/{s/^ *newTag: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p}' deploy/kubernetes/kustomization.yaml)

# Every transitive dependency comes pinned, with hashes, from requirements-dev.lock; the editable install then
# finds nothing left to resolve (tests/deploy checks the lock holds pyproject.toml's pins).
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Re-pins every transitive dependency after a change to pyproject.toml's pins (needs the network).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 --python-platform linux --generate-hashes \
	  --no-header --quiet -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform linux \
	  --generate-hashes --no-header --quiet -o requirements-dev.lock

## Extracts the member app's new strings into its Babel catalogues (services/webapp/locales/*/messages.po).
# The sentences the API refuses with (a domain rule's reason, a conflict's detail), so the member app can say
# them in the person's language: the message argument of each problem raised in services/ and libs/.
API_SENTENCES = -k Invalid:2 -k Conflict:1 -k Forbidden:1 -k NotFound:1 -k Gone:1 -k Problem:1 -k Unauthorized:1 -k reason \
  -k ValueError:1
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F services/webapp/babel.cfg -k gettext -k N_ $(API_SENTENCES) --no-location --omit-header -w 120 \
	  -o services/webapp/locales/messages.pot .
	$(VENV)/bin/pybabel update -i services/webapp/locales/messages.pot -d services/webapp/locales \
	  --no-fuzzy-matching --omit-header -w 120
	$(VENV)/bin/pybabel extract -F services/identity/babel.cfg --no-location --omit-header -w 120 \
	  -o services/identity/locales/messages.pot .
	for lang in ja en; do test -f services/identity/locales/$$lang/LC_MESSAGES/messages.po || \
	  $(VENV)/bin/pybabel init -i services/identity/locales/messages.pot -d services/identity/locales -l $$lang \
	  --no-wrap; done
	$(VENV)/bin/pybabel update -i services/identity/locales/messages.pot -d services/identity/locales \
	  --no-fuzzy-matching --omit-header -w 120

## Builds the one image of all four services, named and tagged as the Kubernetes manifests pull it (needs Docker).
image:
	docker build --pull -t $(IMAGE):$(TAG) .

## Headless Chromium for the browser tests, and a Japanese font so Japanese pages render (Debian's packages;
## skipped where apt is absent).
browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list :lang=ja 2>/dev/null | grep -q .; } || { \
	  command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) || \
	  echo "chromium or a Japanese font is missing: the browser tests will fail or show boxes for Japanese"; }

## Installs what it needs, then runs lint, types and the whole suite against real NATS and PostgreSQL — three
## test files at a time (each test starts its own databases, subjects and ports, and most of its time is
## waiting, so three run well on two cores); the slowest tests are listed at the end.
test: $(STAMP) browser
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy libs services bench tests
	$(PY) -m pytest -q -n 3 --dist loadfile --durations=25

## Starts NATS JetStream, PostgreSQL and every service; seeds a demo; prints the URLs. Ctrl-C stops all.
up: $(STAMP)
	$(PY) -m kizuna.up

## The member app's key pages on a 390-px phone, in Japanese and English, into docs/screens/ (shown in the README).
screenshots: $(STAMP) browser
	$(PY) -m tests.webapp.screenshots docs/screens

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)

typecheck: $(STAMP)
	$(VENV)/bin/mypy libs services bench tests

## Replays a service's events into a fresh read model: make rebuild SERVICE=members
rebuild: $(STAMP)
	$(PY) -m kizuna.rebuild $(SERVICE)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench

## The reliability suite at long settings (make test runs the same tests short).
soak: $(STAMP)
	KIZUNA_FAULT_WRITES=2000 KIZUNA_FUZZ_EXAMPLES=100 KIZUNA_NATS_OUTAGE_SECONDS=30 KIZUNA_PG_OUTAGE_SECONDS=20 \
	  KIZUNA_DUPLICATE_FLOOD=50 KIZUNA_PROPERTY_EXAMPLES=1000 KIZUNA_CONVERGENCE_TIMEOUT=300 KIZUNA_REPLICAS=3 \
	  KIZUNA_CONTRACT_PHASES=examples,coverage,fuzzing \
	  $(PY) -m pytest -q tests/reliability

clean:
	rm -rf $(VENV) .kizuna .pytest_cache .mypy_cache .ruff_cache
