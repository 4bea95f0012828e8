# syntax=docker/dockerfile:1
# NuxTest's one image: web (Daphne), worker, beat, flower and migrate all run it
# (docker-compose.yml). Two stages: the builder compiles wheels; the final image has no
# compilers, runs as an unprivileged user and carries its static files.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nuxtest ./nuxtest
COPY game ./game
RUN pip wheel --wheel-dir /wheels ".[mysql]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUXTEST_ENV=production \
    PYTHONPATH=/app
# The MariaDB client library only (mysqlclient's run-time need); no build tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 nuxtest \
 && useradd --system --uid 10001 --gid nuxtest --home-dir /app --shell /usr/sbin/nologin nuxtest
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels "nuxtest[mysql]" && rm -rf /wheels
WORKDIR /app
COPY --chown=nuxtest:nuxtest manage.py ./
COPY --chown=nuxtest:nuxtest nuxtest ./nuxtest
COPY --chown=nuxtest:nuxtest game ./game
COPY --chown=nuxtest:nuxtest deploy/healthcheck.py ./deploy/healthcheck.py
# Static files at build time; the development settings need no secret for this.
RUN NUXTEST_ENV=development python manage.py collectstatic --noinput -v0 \
 && chown -R nuxtest:nuxtest /app/staticfiles
USER nuxtest
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "deploy/healthcheck.py"]
# No --proxy-headers here: a client's own X-Forwarded-For would pass for its address (the
# login lockout's and /metrics' allow-list). docker-compose.yml adds it behind nginx, which
# overwrites that header.
CMD ["daphne", "-v", "0", "-b", "0.0.0.0", "-p", "8000", "nuxtest.asgi:application"]
