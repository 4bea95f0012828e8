"""Database models: the question bank and stored game results.

Live rooms are not here: their state lives in Redis (`game.store`).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class Category(models.Model):
    """A question category, addressed by its slug."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Question(models.Model):
    """A multiple-choice question with exactly four options."""

    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="questions")
    text = models.CharField(max_length=300)
    options = models.JSONField(help_text="A list of exactly four distinct options.")
    correct = models.PositiveSmallIntegerField(help_text="Index (0-3) of the correct option.")
    difficulty = models.PositiveSmallIntegerField(
        choices=[(1, "easy"), (2, "medium"), (3, "hard")], default=2
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(correct__lte=3), name="question_correct_0_3"),
        ]

    def __str__(self) -> str:
        return self.text

    def clean(self) -> None:
        """Four distinct non-empty options and a correct index among them."""
        opts = self.options
        if (
            not isinstance(opts, list)
            or len(opts) != 4
            or not all(isinstance(o, str) and o.strip() for o in opts)
        ):
            raise ValidationError({"options": "Give exactly four non-empty options."})
        if len({o.strip().lower() for o in opts}) != 4:
            raise ValidationError({"options": "The four options must differ."})
        if self.correct is None or not 0 <= self.correct <= 3:
            raise ValidationError({"correct": "Choose the correct option: 0 to 3."})


class GameResult(models.Model):
    """One player's result of one finished game; written exactly once per (game, user)."""

    game_id = models.UUIDField()
    room = models.CharField(max_length=6)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="results")
    score = models.IntegerField()
    rank = models.PositiveSmallIntegerField()
    correct = models.PositiveSmallIntegerField()
    rounds = models.PositiveSmallIntegerField()
    avg_answer_ms = models.PositiveIntegerField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["game_id", "user"], name="gameresult_once_per_game_user"),
        ]
        indexes = [
            # The scaling guide's index: the day's and week's leaderboards (rows by created_at).
            models.Index(fields=["created_at", "user"], name="gameresult_created_user"),
            # A player's history (newest first, at most 100): read in order from the index,
            # not all the player's rows sorted.
            models.Index(fields=["user", "created_at", "id"], name="gameresult_user_created"),
        ]

    def __str__(self) -> str:
        return f"{self.room} {self.user_id}: {self.score}"
