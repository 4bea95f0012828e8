"""System checks of the database itself, run by `manage.py migrate` (so by `make migrate`,
`make run` and compose's one-shot migrate) and by `manage.py check --database default`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import connections

# A character set of MySQL/MariaDB that holds every Unicode character. utf8mb3 (MariaDB's and
# older MySQL's "utf8") holds none outside the BMP, latin1 not even "π".
MYSQL_CHARSET = "utf8mb4"


@register(Tags.database)
def mysql_charset_check(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    """A MySQL/MariaDB database, and every text column in it, must be utf8mb4.

    The server's default decides a database's character set when CREATE DATABASE names none,
    and many servers' default is still latin1 or utf8mb3: there the question bank failed to
    load (latin1: "Incorrect string value" on the first "π"), or loaded and then a name or a
    question with a character outside the BMP (an emoji, "𐌰") was a 500 on sign-up, log-in
    and the admin (utf8mb3: "Illegal mix of collations", "Incorrect string value").
    """
    errors: list[CheckMessage] = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "mysql":
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT schema_name, default_character_set_name FROM information_schema.schemata"
                " WHERE schema_name = DATABASE()"
            )
            name, charset = cursor.fetchone()
            cursor.execute(
                "SELECT table_name, column_name, character_set_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL"
                " AND character_set_name <> %s ORDER BY table_name, ordinal_position",
                [MYSQL_CHARSET],
            )
            columns = cursor.fetchall()
        if charset == MYSQL_CHARSET and not columns:
            continue
        found = [f"the database's default is {charset}"] if charset != MYSQL_CHARSET else []
        if columns:
            listed = ", ".join(f"{t}.{c} ({cs})" for t, c, cs in columns[:5])
            more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
            found.append(f"{len(columns)} text columns are not {MYSQL_CHARSET}: {listed}{more}")
        tables = sorted({t for t, _, _ in columns})
        errors.append(
            Error(
                f"database {name!r} ({alias}) is not {MYSQL_CHARSET}: {'; '.join(found)}. Names and "
                "questions with characters outside its character set would fail with server errors.",
                hint=(
                    f"A new database: CREATE DATABASE {name} CHARACTER SET {MYSQL_CHARSET}. This one: "
                    f"ALTER DATABASE {name} CHARACTER SET {MYSQL_CHARSET}"
                    + "".join(f"; ALTER TABLE {t} CONVERT TO CHARACTER SET {MYSQL_CHARSET}" for t in tables)
                ),
                id="nuxtest.E001",
            )
        )
    return errors
