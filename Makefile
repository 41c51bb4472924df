# The plain entry points. README: `make run` starts everything on one machine, `make test` runs the suite.
# Needs only Python 3.11+: the virtualenv and the pinned requirements are installed on first use. The browser tests
# also need Chromium (/usr/bin/chromium); without it they fail with the command that installs it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

# Reinstall only when the requirements changed: a stamp in the venv holds the hash of the files installed.
CHECK_VERSION := import sys; sys.exit(0 if sys.version_info >= (3, 11) else "syncadmin needs Python 3.11 or newer")

define install_requirements
	@test -x $(PY) || { \
		test -n "$(PYTHON)" || { echo "syncadmin needs Python 3.11 or newer: install it, or run make PYTHON=/path/to/python3.11"; exit 1; }; \
		$(PYTHON) -c '$(CHECK_VERSION)' && echo "Creating the virtualenv $(VENV) with $(PYTHON)" && $(PYTHON) -m venv $(VENV); }
	@$(PY) -c '$(CHECK_VERSION)'
	@hash=$$($(PY) -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' $(2)); \
	if [ "$$(cat $(VENV)/.stamp-$(1) 2>/dev/null)" != "$$hash" ]; then \
		echo "Installing $(firstword $(2)) into $(VENV)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r $(firstword $(2)) && echo "$$hash" > $(VENV)/.stamp-$(1); \
	fi
endef

.PHONY: help run test lint fmt ci venv venv-dev migrate demo

help:
	@echo "make run    start web, worker, scheduler and an embedded Redis on http://127.0.0.1:$(PORT)/ (Ctrl-C stops all)"
	@echo "make test   run the whole test suite"
	@echo "make lint   ruff check and format check, import contracts, type check"
	@echo "make fmt    format and autofix with ruff"
	@echo "make ci     what CI runs: .ci/run (as root on Debian; installs what is missing, e.g. PostgreSQL and Redis)"

venv:
	$(call install_requirements,run,requirements.txt)

venv-dev:
	$(call install_requirements,dev,requirements-dev.txt requirements.txt)

migrate: venv
	@echo "Migrating the databases (default and sandbox)"
	@$(PY) manage.py migrate --no-input --verbosity 0
	@$(PY) manage.py migrate --no-input --verbosity 0 --database sandbox

demo: migrate
	@$(PY) manage.py demo_setup

run: demo
	@$(PY) manage.py serve

# Two pytest-xdist workers: the suite takes about 10 minutes on 2 cores instead of 13 (browser tests and the sandbox's
# HTTP leave a core idle in one process). Each worker has its own test databases and Redis database. PYTEST_WORKERS=0
# runs it in one process.
PYTEST_WORKERS ?= 2

test: venv-dev
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

fmt: venv-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

ci:
	.ci/run
