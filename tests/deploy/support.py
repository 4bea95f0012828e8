"""Run Django in a subprocess with a chosen environment (production settings are read at import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Long and random enough for check --deploy (security.W009); used only by these tests.
PRODUCTION_SECRET = "test-only-Qm9yZ2V0LXRoaXMta2V5LWl0LWlzLWZvci10ZXN0cy1vbmx5LTEyMzQ1Njc4OTA"

# Variables the settings read that a developer's shell might set: removed, then chosen.
_CHOSEN = (
    "NUXTEST_ENV",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DJANGO_DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "NUXTEST_TRUSTED_PROXY_COUNT",
    "NUXTEST_CORS_ALLOWED_ORIGINS",
    "NUXTEST_SERVICE",
    "FLOWER_BASIC_AUTH",
)


def production_env(**overrides: str | None) -> dict[str, str]:
    """The current environment with production settings; an override of None removes a variable."""
    env = {k: v for k, v in os.environ.items() if k not in _CHOSEN}
    env.update(
        NUXTEST_ENV="production",
        SECRET_KEY=PRODUCTION_SECRET,
        ALLOWED_HOSTS="quiz.example.com",
        CSRF_TRUSTED_ORIGINS="https://quiz.example.com",
        NUXTEST_TRUSTED_PROXY_COUNT="1",
        DJANGO_SETTINGS_MODULE="nuxtest.settings",
        NUXTEST_LOG_FORMAT="text",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_python(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the repository with `env`."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
