"""NuxTest Django project.

The Celery app is loaded on first use (`nuxtest.celery_app`, or `celery -A nuxtest`), not
on import: `python -m nuxtest.worker` must set up prometheus-client's multiprocess mode
before anything imports it.
"""

from typing import Any

__all__ = ["celery_app"]


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from nuxtest.celery import app

        return app
    raise AttributeError(name)
