"""The web process's start-up objects are out of the garbage collector's full passes."""

from __future__ import annotations

import gc


def test_loading_the_asgi_application_freezes_what_start_up_made():
    import nuxtest.asgi  # noqa: F401

    assert gc.get_freeze_count() > 10_000
