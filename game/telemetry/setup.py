"""Switch on each signal once per process (web, worker, beat), each by its own variable."""

from __future__ import annotations

import logging
import os
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from game.telemetry import logs, metrics, sentry, tracing

logger = logging.getLogger(__name__)
_done: set[str] = set()


@cache
def version() -> str:
    """The installed package version."""
    try:
        return metadata.version("nuxtest")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed with -e
        return "0.0.0"


@cache
def commit() -> str:
    """The running commit: NUXTEST_COMMIT (set by the image build), else `git rev-parse`."""
    value = os.environ.get("NUXTEST_COMMIT", "").strip()
    if value:
        return value[:40]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def telemetry_setup(service: str, *, traces: bool = True, relay: bool = False) -> None:
    """Name this process in every signal and start what the environment asks for (once).

    `traces=False` leaves tracing to `traces_setup`, called later in the process that will
    make the spans (a prefork pool's children); `relay=True` exports the spans from a child
    process (the web process: `span_relay`).
    """
    from django.conf import settings

    service = os.environ.get("NUXTEST_SERVICE", service)
    logs.SERVICE = service
    logs.ENVIRONMENT = settings.NUXTEST_ENV
    if service in _done:
        return
    _done.add(service)
    metrics.BUILD_INFO.labels(version=version(), commit=commit()).set(1)
    on_traces = traces_setup(service, relay=relay) if traces else False
    on_sentry = sentry.setup(
        service, release=f"nuxtest@{version()}+{commit()}", environment=settings.NUXTEST_ENV
    )
    logger.info(
        "telemetry ready: traces %s, sentry %s",
        "per pool process" if not traces and tracing.wanted() else ("on" if on_traces else "off"),
        "on" if on_sentry else "off",
        extra={"event": "telemetry_ready"},
    )


def traces_setup(service: str, *, relay: bool = False) -> bool:
    """Start this process's span exporter (once); True if tracing is on."""
    from django.conf import settings

    service = os.environ.get("NUXTEST_SERVICE", service)
    return tracing.setup(service, version=version(), environment=settings.NUXTEST_ENV, relay=relay)
