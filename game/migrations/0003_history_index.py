"""A player's history read in order from an index: (user, created_at, id).

`GET /api/me/results/` takes a player's newest 100 results. With only the foreign key's
index on `user_id`, the database read every result of the player and sorted them — a few
rows for most players, every game ever played for the busiest. This index hands them over
newest first, and the scan stops at the hundredth.

Built without stopping the game's writes (README, "A new release": migrations run while
the old release serves): `CREATE INDEX CONCURRENTLY` on PostgreSQL, which cannot run in a
transaction (hence `atomic = False`); InnoDB builds a secondary index in place with writes
going on; SQLite is the local default, where it does not matter.
"""

from typing import Any

from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexOnline(AddIndexConcurrently):
    """AddIndexConcurrently on PostgreSQL, the plain AddIndex on the other databases."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("game", "0002_mysql_exact_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexOnline(
            model_name="gameresult",
            index=models.Index(fields=["user", "created_at", "id"], name="gameresult_user_created"),
        ),
    ]
