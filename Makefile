# One command per job, the same here and in .ci/run. `make` = test + lint.
.DEFAULT_GOAL := all
.PHONY: all venv node test lint format gen docs bench

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k cli -x"`.
PYTEST_ARGS ?=

all: test lint

# The virtualenv, reinstalled when pyproject.toml changes. On a Debian python3
# without venv support, install python3-venv first (as root) or say what to do.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
	    else \
	      echo "$(PYTHON) cannot create virtualenvs: run 'sudo apt-get install python3-venv'" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# PostgreSQL tests need a server on 127.0.0.1:5432. As root, start the local
# cluster when it is down; otherwise those tests are skipped (failed under CI=true).
# The real Electric client and TanStack DB for the sync tests, pinned by the
# lockfile. Without npm the sync tests skip locally (and fail under CI=true).
NODE_DIR := tests/sync/node
node: $(NODE_DIR)/node_modules/.installed

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
	  echo "npm not found: the sync tests will skip (install Node.js 20+ to run them)"; \
	fi

test: venv node
	@if command -v pg_ctlcluster >/dev/null && [ "$$(id -u)" = 0 ] \
	    && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -n 1) main start; \
	fi
	$(BIN)/python -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	$(BIN)/python scripts/gen_async.py --check
	$(BIN)/python scripts/gen_cli_docs.py --check

format: venv
	$(BIN)/ruff check --fix
	$(BIN)/ruff format

# Regenerate what is generated: src/threadkeep/aio.py and docs/cli.md.
gen: venv
	$(BIN)/python scripts/gen_async.py
	$(BIN)/python scripts/gen_cli_docs.py

docs: venv
	$(BIN)/python scripts/gen_cli_docs.py

bench: venv
	$(BIN)/python -m benchmarks
