"""Provision load-test accounts straight into a stack's database, with refresh tokens.

    DATABASE_URL=... python -m loadtest.accounts --count 1000 --host http://127.0.0.1:8001

Signing up through the API costs the server two password hashes per player (sign-up and
token), which at a few hundred players is all a 2-core machine does for minutes and
pollutes the figures of the run. For a stack you control (same DATABASE_URL and
SECRET_KEY as its web processes), this writes the accounts and their refresh tokens into
the locustfile's account cache, so players only refresh a token. Against any other server
the locustfile signs up through the API instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from pathlib import Path

PASSWORD = "Load-test-password-42"  # noqa: S105 - load-test accounts only
REPORTS = Path(__file__).resolve().parent / "reports"


def accounts_path(host: str) -> Path:
    """The account cache for a target host (LOADTEST_ACCOUNTS overrides it)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", host).strip("_")
    return Path(os.environ.get("LOADTEST_ACCOUNTS") or REPORTS / f"accounts-{slug}.json")


def main(argv: list[str] | None = None) -> int:
    """Create `--count` accounts and write the cache for `--host`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--host", required=True, help="the URL the load test will target")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from rest_framework_simplejwt.tokens import RefreshToken

    user_model = get_user_model()
    run = uuid.uuid4().hex[:6]
    hashed = make_password(PASSWORD)  # one hash for all: creating them costs nothing more
    users = [user_model(username=f"lt{run}{i:05d}", password=hashed) for i in range(args.count)]
    user_model.objects.bulk_create(users, batch_size=500)
    created = user_model.objects.filter(username__startswith=f"lt{run}")
    accounts = [
        {"username": u.username, "password": PASSWORD, "refresh": str(RefreshToken.for_user(u))}
        for u in created
    ]
    path = accounts_path(args.host)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(accounts))
    print(f"{len(accounts)} accounts written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
