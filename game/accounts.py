"""Creating accounts, for the API's sign-up and the sign-up page alike."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from game import store


class UsernameTaken(Exception):
    """The name, case aside, has an account already (or is being given one right now)."""


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
