"""The Celery app: one per process, configured from Django settings (CELERY_* names)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")

app = Celery("nuxtest")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Logging, telemetry, task metrics and the worker heartbeat hang on Celery's signals,
# which must be connected before the worker starts.
import game.telemetry.celery_signals  # noqa: E402, F401
