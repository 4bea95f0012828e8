"""Every test here plays in rooms: a small question bank, cheap password hashing."""

from __future__ import annotations

from typing import Any

import pytest

from game.models import Category, Question


@pytest.fixture(autouse=True)
def _game_ready(transactional_db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    category = Category.objects.create(slug="general", name="General")
    Question.objects.bulk_create(
        Question(
            category=category,
            text=f"Question {i}?",
            options=[f"q{i} option {o}" for o in range(4)],
            correct=i % 4,
        )
        for i in range(24)
    )
