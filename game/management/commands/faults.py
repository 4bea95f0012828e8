"""`manage.py faults [show | set NAME=VALUE ... | clear [NAME ...]]`: the operators' fault flags."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from game import faults, store
from game.aio import run_sync


class Command(BaseCommand):
    help = "Show, set or clear the fault flags every process obeys (see game/faults.py)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", default="show", choices=["show", "set", "clear"])
        parser.add_argument("flags", nargs="*", help="set: NAME=VALUE pairs; clear: names (none: all)")

    def handle(self, *args: Any, action: str, flags: list[str], **options: Any) -> None:
        try:
            if action == "set":
                pairs = dict(self._pair(f) for f in flags)
                if not pairs:
                    raise CommandError("set needs NAME=VALUE pairs, e.g. answer_delay_ms=500")
                current = run_sync(faults.update(pairs))
            elif action == "clear":
                unknown = [f for f in flags if f not in faults.NAMES]
                if unknown:
                    raise CommandError(f"unknown fault flags: {', '.join(unknown)}")
                current = run_sync(faults.update(dict.fromkeys(flags, 0)) if flags else faults.clear())
            else:
                current = run_sync(faults.current())
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(current.as_dict(), indent=2))
        if not run_sync(store.instances_count()) and not store.workers_online(now=time.time()):
            # The flags are kept, but a mistyped REDIS_URL would leave them where no game looks.
            where = urlsplit(settings.REDIS_URL)
            self.stderr.write(
                f"note: no web process or worker is running against this Redis "
                f"({where.hostname}:{where.port}{where.path}): the flags wait there for one. "
                "Set REDIS_URL to the game's Redis if it runs elsewhere."
            )

    @staticmethod
    def _pair(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep:
            raise CommandError(f"{text!r}: expected NAME=VALUE")
        return name.strip(), value.strip()
