"""Sentry's set-up: which integrations run (in a child process: sentry-sdk is process-global)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import django
django.setup()
import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from game.telemetry import sentry
assert sentry.setup("web", release="nuxtest@test", environment="test")
client = sentry_sdk.get_client()
kinds = (DjangoIntegration, CeleryIntegration, RedisIntegration, LoggingIntegration)
print(" ".join(k.identifier for k in kinds if client.get_integration(k) is not None))
"""


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, "django celery redis logging"),
        ("true", "django celery redis logging"),
        ("false", "django celery logging"),
    ],
)
def test_sentry_runs_its_integrations_and_redis_breadcrumbs_can_be_switched_off(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "NUXTEST_SENTRY_REDIS"}
    env.update(SENTRY_DSN="http://public@127.0.0.1:9/1", DJANGO_SETTINGS_MODULE="nuxtest.settings")
    if setting is not None:
        env["NUXTEST_SENTRY_REDIS"] = setting
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == expected


def test_before_send_filters_secret_values_in_urls_query_strings_and_text():
    # A security walk-through found `?password=…` and `sessionid=…` left in an event's URL,
    # query string, breadcrumbs and exception text.
    from game.telemetry.sentry import before_send

    event = {
        "request": {
            "url": "https://quiz.example.com/accounts/login/?next=/&password=hunter2",
            "query_string": "access=eyJhbGciOi.x.y&password=hunter2&page=2",
            "headers": {"Authorization": "Bearer abc.def", "User-Agent": "curl"},
        },
        "exception": {"values": [{"value": "bad login password=hunter2 sessionid=s3cr3t; room ABCD23"}]},
        "message": (
            "form password1=hunter2&password2=hunter2 next%3D/ password%3Dhunter2 {'pwd': 'hunter2', 'n': 3}"
        ),
        "breadcrumbs": {"values": [{"data": {"url": "/api/x?token=t0k3n&csrfmiddlewaretoken=c5rf"}}]},
    }
    text = repr(before_send(event, {}))
    for secret in ("hunter2", "s3cr3t", "t0k3n", "c5rf", "abc.def", "eyJhbGciOi"):
        assert secret not in text, secret
    # What is not secret stays readable.
    assert "next=/" in text and "page=2" in text and "room ABCD23" in text and "curl" in text
    assert "next%3D/" in text and "'n': 3" in text
    assert "password=[Filtered]" in text
