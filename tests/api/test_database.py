"""The database's own system checks (game/checks.py), which `manage.py migrate` runs first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.checks import CheckMessage, Tags, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

mysql_only = pytest.mark.skipif(
    connection.vendor != "mysql", reason="a MySQL/MariaDB database's character set"
)


def database_errors() -> list[CheckMessage]:
    """The project's own database checks, as `migrate` runs them (registered by the app)."""
    return [m for m in run_checks(databases=["default"], tags=[Tags.database]) if m.id.startswith("nuxtest.")]


def test_the_database_the_tests_run_on_passes_the_checks():
    assert database_errors() == []


@pytest.fixture
def utf8mb3_default() -> Iterator[str]:
    """The test database, its default character set utf8mb3 (a server whose default it is)."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE `{name}` CHARACTER SET utf8mb3")
    try:
        yield name
    finally:
        with connection.cursor() as cursor:
            test = connection.settings_dict["TEST"]
            cursor.execute(
                f"ALTER DATABASE `{name}` CHARACTER SET {test['CHARSET']} COLLATE {test['COLLATION']}"
            )


@mysql_only
def test_migrate_refuses_a_database_whose_default_character_set_is_not_utf8mb4(utf8mb3_default):
    # Created without CHARACTER SET on such a server, it loaded the question bank and then
    # answered 500 to a sign-up or log-in with a name outside the BMP, and to the admin.
    with pytest.raises(SystemCheckError, match=r"nuxtest\.E001.*default is utf8mb3"):
        call_command("migrate", verbosity=0, skip_checks=False)


@mysql_only
def test_a_text_column_that_is_not_utf8mb4_is_named_with_the_statement_that_converts_it():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE nuxtest_check_mb3 (name varchar(10) CHARACTER SET utf8mb3)")
    try:
        errors = database_errors()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE nuxtest_check_mb3")
    assert [e.id for e in errors] == ["nuxtest.E001"]
    assert "nuxtest_check_mb3.name (utf8mb3)" in errors[0].msg
    assert "ALTER TABLE nuxtest_check_mb3 CONVERT TO CHARACTER SET utf8mb4" in (errors[0].hint or "")
