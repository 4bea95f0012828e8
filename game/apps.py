"""Django app config for the game."""

from django.apps import AppConfig


class GameConfig(AppConfig):
    """The NuxTest game app."""

    name = "game"
    default_auto_field = "django.db.models.BigAutoField"
