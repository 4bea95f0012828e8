"""Django app config for the game."""

from django.apps import AppConfig


class GameConfig(AppConfig):
    """The NuxTest game app."""

    name = "game"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process (web, worker, beat, tests) talks to Redis through redis-py's asyncio pool.
        from game.redis_tune import redis_tune

        redis_tune()
