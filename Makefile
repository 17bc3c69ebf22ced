# Webcare desk. `make run` starts the whole desk; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test bench lint format setup setup-dev migrate demo clean messages browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

setup: $(VENV)/.runtime

setup-dev: $(VENV)/.dev

migrate: setup
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo

## run: set up and start Redis, the Celery worker and beat, and the ASGI server on http://127.0.0.1:$(PORT)
run: demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo
	@echo "  Webcare desk: http://127.0.0.1:$(PORT)/   (admin: http://127.0.0.1:$(PORT)/admin/)"
	@echo "  Demo logins: lead / anna / pierre / jonas / lucia, password: $${DEMO_PASSWORD:-webcare-demo}"
	@echo "  Ctrl-C stops everything."
	@echo
	@# honcho exits 130 after Ctrl-C has stopped every process: that is a clean stop.
	WEB_PORT=$(PORT) $(BIN)/honcho start -f Procfile || [ $$? -eq 130 ]

## browser: Debian's chromium for the browser tests (Playwright drives it; its own download is not used)
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium fonts-noto-color-emoji'" >&2; exit 1; fi; }

## test: set up and run lint, migration check and the whole test suite (SQLite unless DATABASE_URL is set)
test: setup-dev browser
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run --verbosity 0
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yml
	$(BIN)/python -m webcare.devtools.testrun -- $(PYTEST_ARGS)

bench: setup-dev
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/inbox_list.py

lint: setup-dev
	$(BIN)/ruff check .

format: setup-dev
	$(BIN)/ruff format .

messages: setup-dev
	$(BIN)/python manage.py makemessages -l nl --ignore=.venv --ignore=var
	$(BIN)/python manage.py compilemessages --ignore=.venv

clean:
	rm -rf var/test-* var/redis-test var/staticfiles
