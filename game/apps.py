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
        # Usernames compare byte for byte on every database (migration 0002 on MySQL/MariaDB);
        # `username__iexact` folds case the same way on all of them.
        from game.accounts import usernames_fold_case

        usernames_fold_case()

        # The database's own checks (a MySQL/MariaDB database must be utf8mb4), run by migrate.
        import game.checks  # noqa: F401
