"""Every test here plays in rooms: `game_ready` (autouse) gives a small question bank, cheap hashing."""

from tests.play import game_ready, listen  # noqa: F401
