"""The end-to-end stack of tests/e2e/conftest.py, reused as it is.

Its fixtures (`stack`, `live` and whatever they depend on) are imported here rather than
copied, so the load scenarios run against exactly the processes the e2e tests use.
"""

from __future__ import annotations

from tests.e2e import conftest as _e2e


def _is_fixture(obj: object) -> bool:
    # pytest >= 8.4 wraps fixtures in FixtureFunctionDefinition; older ones mark functions.
    return type(obj).__name__ == "FixtureFunctionDefinition" or hasattr(obj, "_pytestfixturefunction")


globals().update({name: obj for name, obj in vars(_e2e).items() if _is_fixture(obj)})
