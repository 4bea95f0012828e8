"""Production settings: check --deploy is clean, and start-up is refused without the secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.support import production_env, run_python


def test_check_deploy_passes_with_production_settings():
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(missing):
    result = run_python(["manage.py", "check"], production_env(**{missing: None}))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


@pytest.mark.parametrize(
    "weak",
    [
        "abc",
        "x" * 60,
        "django-insecure-" + "Qm9yZ2V0LXRoaXMta2V5LWl0" * 3,
        # The development key is published in the settings module (a re-check found it passing).
        "dev-insecure-nuxtest-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz",
    ],
)
@pytest.mark.parametrize("source", ["SECRET_KEY", "SECRET_KEY_FILE"])
def test_production_refuses_to_start_with_a_weak_secret_key(tmp_path, weak, source):
    # It signs every JWT: "abc" started in production before (a security walk-through).
    if source == "SECRET_KEY_FILE":
        key_file = tmp_path / "secret"
        key_file.write_text(weak)
        env = production_env(SECRET_KEY=None, SECRET_KEY_FILE=str(key_file))
    else:
        env = production_env(SECRET_KEY=weak)
    result = run_python(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "too weak" in result.stderr


def test_development_keeps_any_secret_key():
    script = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    result = run_python(["-c", script], production_env(NUXTEST_ENV="development", SECRET_KEY="abc"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "abc"


def test_flower_refuses_to_start_in_production_without_its_log_in():
    # It shows every task's arguments: the Procfile ran it open (a security walk-through).
    result = run_python(["-c", "import django; django.setup()"], production_env(NUXTEST_SERVICE="flower"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "FLOWER_BASIC_AUTH" in result.stderr
    for empty in ("ops:", "ops", ":pw", "ops:pw,admin:"):  # an empty password let anyone in
        refused = run_python(
            ["-c", "import django; django.setup()"],
            production_env(NUXTEST_SERVICE="flower", FLOWER_BASIC_AUTH=empty),
        )
        assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr, empty
    with_login = production_env(NUXTEST_SERVICE="flower", FLOWER_BASIC_AUTH="ops:a-long-password-7")
    assert run_python(["-c", "import django; django.setup()"], with_login).returncode == 0
    # The other processes do not need it.
    assert (
        run_python(
            ["-c", "import django; django.setup()"], production_env(NUXTEST_SERVICE="worker")
        ).returncode
        == 0
    )


def test_log_lines_say_production_before_any_set_up():
    # Flower's lines, and beat's first ones, said "development" in production (a re-check).
    script = "from game.telemetry import logs; print(logs.ENVIRONMENT)"
    result = run_python(["-c", script], production_env(NUXTEST_SERVICE="flower"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "production"


def test_production_reads_the_secret_key_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text("from-a-file-" + "k" * 60 + "\n")
    script = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    env = production_env(SECRET_KEY=None, SECRET_KEY_FILE=str(key_file))
    result = run_python(["-c", script], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file-" + "k" * 60


SETTINGS_SCRIPT = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name, None) for name in [
    "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY", "SECURE_PROXY_SSL_HEADER",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS", "CORS_ALLOWED_ORIGINS",
]}))
"""


def production_settings(**overrides: str | None) -> dict:
    result = run_python(["-c", SETTINGS_SCRIPT], production_env(**overrides))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_settings_harden_https_cookies_and_headers():
    s = production_settings(
        ALLOWED_HOSTS="quiz.example.com,.example.org",
        NUXTEST_CORS_ALLOWED_ORIGINS="https://app.example.com",
    )
    assert s["DEBUG"] is False
    assert s["ALLOWED_HOSTS"] == ["quiz.example.com", ".example.org"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://quiz.example.com"]
    assert s["SECURE_SSL_REDIRECT"] is True
    assert s["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert s["SECURE_HSTS_PRELOAD"] is True
    assert s["SESSION_COOKIE_SECURE"] is True and s["CSRF_COOKIE_SECURE"] is True
    assert s["SESSION_COOKIE_HTTPONLY"] is True and s["CSRF_COOKIE_HTTPONLY"] is True
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert s["SECURE_REFERRER_POLICY"] == "same-origin"
    assert s["X_FRAME_OPTIONS"] == "DENY"
    assert s["CORS_ALLOWED_ORIGINS"] == ["https://app.example.com"]


def test_the_proxy_header_is_trusted_only_when_a_proxy_is_configured():
    assert production_settings(NUXTEST_TRUSTED_PROXY_COUNT="0")["SECURE_PROXY_SSL_HEADER"] is None
    assert production_settings(NUXTEST_TRUSTED_PROXY_COUNT=None)["SECURE_PROXY_SSL_HEADER"] is None


def test_development_defaults_stay_usable_over_plain_http(settings):
    # The test run itself uses development settings.
    assert settings.NUXTEST_ENV == "development"
    assert settings.SECURE_SSL_REDIRECT is False
    assert settings.SECURE_HSTS_SECONDS == 0
    assert settings.SESSION_COOKIE_SECURE is False


@pytest.mark.parametrize("grace", ["-1", "1000"])
def test_a_deadline_grace_outside_the_sweeper_s_is_refused(grace):
    # Negative, it would close rounds before their deadline; past the sweeper's grace (1 s),
    # the sweeper would close them before their timer.
    result = run_python(["manage.py", "check"], production_env(NUXTEST_DEADLINE_GRACE_MS=grace))
    assert result.returncode != 0
    assert "NUXTEST_DEADLINE_GRACE_MS" in result.stderr


def test_every_variable_the_settings_read_is_in_the_readme_s_configuration_table():
    # An operator looks for a variable in README's table; the settings module is its one reader.
    root = Path(__file__).resolve().parents[2]
    read = set(
        re.findall(
            r'\benv_(?:str|bool|int|float|list)\(\s*"([A-Z][A-Z0-9_]*)"',
            (root / "nuxtest/settings.py").read_text(),
        )
    )
    readme = (root / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Observability")]
    assert len(read) > 40
    assert sorted(name for name in read if f"`{name}`" not in table) == []
