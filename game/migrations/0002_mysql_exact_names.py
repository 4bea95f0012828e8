"""On MySQL and MariaDB, usernames and category slugs compare byte for byte, as on PostgreSQL.

The default collations there (MariaDB's utf8mb4_general_ci, utf8mb4_unicode_ci; MySQL's
utf8mb4_0900_ai_ci) ignore case and accents, and the first two weigh every character outside
the BMP alike. The unique indexes and `=` then took "Jose" for "José", "p𐌱" for "p𐌰" and
"ALICE" for "Alice": a sign-up of the one was refused as taken, a log-in as the other
succeeded, a room's category "SCIENCE" was taken for "science" — where PostgreSQL tells them
apart. utf8mb4_bin compares as PostgreSQL does; the case-insensitive check of a new name is
the sign-up's own (game.accounts.create_account), not the column's.

Nothing to do on other databases. A later migration of django.contrib.auth that alters
`username` rebuilds the column in the table's default collation: run this one's `forwards`
again after it.
"""

from typing import Any

from django.conf import settings
from django.db import migrations

COLLATION = "utf8mb4_bin"


def _columns(apps: Any) -> list[tuple[Any, Any]]:
    user = apps.get_model(settings.AUTH_USER_MODEL)
    category = apps.get_model("game", "Category")
    return [
        (user, user._meta.get_field("username")),  # historical models lack USERNAME_FIELD
        (category, category._meta.get_field("slug")),
    ]


def _collate(apps: Any, schema_editor: Any, collation: str | None) -> None:
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    qn = schema_editor.quote_name
    for model, field in _columns(apps):
        collate = f" CHARACTER SET utf8mb4 COLLATE {collation}" if collation else ""
        schema_editor.execute(
            f"ALTER TABLE {qn(model._meta.db_table)} MODIFY {qn(field.column)} "
            f"{field.db_type(connection)}{collate} NOT NULL"
        )


def forwards(apps: Any, schema_editor: Any) -> None:
    _collate(apps, schema_editor, COLLATION)


def backwards(apps: Any, schema_editor: Any) -> None:
    _collate(apps, schema_editor, None)  # the table's default collation


class Migration(migrations.Migration):
    atomic = False  # DDL: MySQL commits it at once, and Django refuses it inside a transaction

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("game", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
