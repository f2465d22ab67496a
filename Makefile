# Voucher marketplace — `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.DEFAULT_GOAL := help
.PHONY: help run test lint browser screenshots fuzz soak crash bench clean translations

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.run-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.run-installed $@

run: export APP_ENV ?= development
run: $(VENV)/.run-installed ## Serve the console and the API with a demo dataset on http://127.0.0.1:8000 (SQLite)
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	@echo "Serving http://127.0.0.1:8000  (the console: the pages above; the API: /api/v1/docs, health: /api/v1/health)"
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: $(VENV)/.test-installed ## Lint, check the layering, run every test on SQLite and PostgreSQL (browser tests too)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(VENV)/.test-installed ## Only ruff and the import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/lint-imports

browser: $(VENV)/.test-installed ## Only the browser tests (Chromium at /usr/bin/chromium); screenshots in tests/browser/screenshots/
	$(BIN)/pytest tests/browser

screenshots: $(VENV)/.test-installed ## The browser tests, saving their screenshots to docs/screenshots/
	SCREENSHOTS_TO_DOCS=1 $(BIN)/pytest tests/browser

fuzz: $(VENV)/.test-installed ## Long schemathesis run: every operation, every role, valid and invalid data
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} $(BIN)/pytest -q tests/test_fuzz.py

soak: $(VENV)/.test-installed ## The stateful test for much longer (about an hour), on SQLite and PostgreSQL
	STATEFUL_EXAMPLES=$${STATEFUL_EXAMPLES:-1000} STATEFUL_STEPS=$${STATEFUL_STEPS:-60} $(BIN)/pytest tests/test_stateful.py -q

crash: $(VENV)/.test-installed ## Crash test: kill -9 a worker and crash PostgreSQL mid-load (RESTARTS the local PostgreSQL)
	RUN_CRASH=1 $(BIN)/pytest tests/crash -q

bench: $(VENV)/.test-installed ## Benchmarks at full size on SQLite and PostgreSQL (~45 min, the console's county included); JSON in bench/results/
	$(BIN)/python -m bench

TRANSLATIONS := marketplace/web/translations
translations: $(VENV)/.test-installed ## Extract the console's messages, update the English catalog, compile it
	$(BIN)/pybabel extract -F babel.cfg -k _l -o $(TRANSLATIONS)/messages.pot --no-location --sort-output --omit-header --no-wrap .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -D messages -l en --no-fuzzy-matching --ignore-obsolete --no-wrap
	$(BIN)/pybabel compile -d $(TRANSLATIONS) -D messages
	@echo "Translate the empty msgstr entries in $(TRANSLATIONS)/en/LC_MESSAGES/messages.po, then run make translations again."

clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis instance
