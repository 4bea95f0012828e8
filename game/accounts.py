"""Creating accounts, for the API's sign-up and the sign-up page alike."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.backends.signals import connection_created
from django.db.models import Field, Lookup, Value
from django.db.models.functions import Upper
from django.db.models.lookups import Exact

from game import store


class UsernameTaken(Exception):
    """The name, case aside, has an account already (or is being given one right now)."""


class UpperIExact(Lookup):
    """`username__iexact` as PostgreSQL runs it, on every database: UPPER() of both sides.

    MySQL and MariaDB run `iexact` as LIKE in the column's collation, which is byte for byte
    for usernames there (utf8mb4_bin, migration game 0002): it would not fold case at all,
    and the case-insensitive checks of a new name (here, Django's sign-up and admin forms)
    would pass "alice" beside "Alice".
    """

    lookup_name = "iexact"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        rhs = self.rhs if hasattr(self.rhs, "resolve_expression") else Value(self.rhs)
        return Exact(Upper(self.lhs), Upper(rhs)).as_sql(compiler, connection)


def usernames_fold_case() -> None:
    """Give the username field the `iexact` of UpperIExact (GameConfig.ready)."""
    field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
    assert isinstance(field, Field)
    field.register_lookup(UpperIExact)  # on this field only, not on every CharField
    connection_created.connect(_sqlite_unicode_upper, dispatch_uid="nuxtest_sqlite_upper")


def _sqlite_unicode_upper(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite's UPPER() folds ASCII only ("renée" and "RENÉE" were two names): Python's, there."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("UPPER", 1, _upper, deterministic=True)


def _upper(value: Any) -> Any:
    """Upper case letter by letter, as PostgreSQL's and MariaDB's UPPER() do ("ß" stays)."""
    if not isinstance(value, str):
        return value
    return "".join(u if len(u := c.upper()) == 1 else c for c in value)


def create_account(username: str, password: str) -> Any:
    """Create the account `username` (NFKC-normalised, as Django stores names); raise
    UsernameTaken if that name, case aside, has an account or another sign-up is creating it.

    The check and the insert are two steps, and the database's unique index on the name is
    case-sensitive, so the name is held in Redis between them: ten sign-ups of one name at
    once were one account and nine 500s (the index), and "racer2" and "Racer2" at once were
    two look-alike accounts (a security walk-through).
    """
    user_model = get_user_model()
    name = user_model.normalize_username(username)
    with store.name_claimed(name) as held:
        if not held or user_model._default_manager.filter(username__iexact=name).exists():
            raise UsernameTaken(name)
        try:
            with transaction.atomic():
                return user_model.objects.create_user(username=name, password=password)
        except IntegrityError as exc:  # the claim outlived by a very slow insert
            raise UsernameTaken(name) from exc
