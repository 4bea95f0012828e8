"""GET /api/leaderboard/?period=day|week|all: top 50 by total score, cached."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from game.models import GameResult
from tests.api.conftest import field_error

pytestmark = pytest.mark.django_db(transaction=True)

BOARD = "/api/leaderboard/"
HOURS_2 = timedelta(hours=2)
DAYS_3 = timedelta(days=3)
DAYS_30 = timedelta(days=30)


def result(user, score: int, age: timedelta, **fields) -> GameResult:
    values = {
        "game_id": uuid.uuid4(),
        "room": "ABCDEF",
        "user": user,
        "score": score,
        "rank": 1,
        "correct": 3,
        "rounds": 5,
        "avg_answer_ms": 2500,
        "created_at": timezone.now() - age,
    }
    values.update(fields)
    return GameResult.objects.create(**values)


def board(client, period: str) -> list[dict]:
    response = client.get(BOARD, {"period": period})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def scores(rows: list[dict]) -> list[tuple[str, int]]:
    return [(r["name"], r["score"]) for r in rows]


@pytest.fixture
def played(make_user):
    """alice, bob and carol with results 2 hours, 3 days and 30 days old."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    result(alice, 100, HOURS_2)
    result(alice, 200, DAYS_3)
    result(alice, 400, DAYS_30)
    result(bob, 300, HOURS_2)
    result(bob, 50, DAYS_3)
    result(carol, 1000, DAYS_30)
    return alice, bob, carol


def test_the_day_board_sums_the_last_24_hours(api, played):
    assert scores(board(api, "day")) == [("bob", 300), ("alice", 100)]


def test_the_week_board_sums_the_last_7_days(api, played):
    assert scores(board(api, "week")) == [("bob", 350), ("alice", 300)]


def test_the_all_time_board_sums_every_result(api, played):
    assert scores(board(api, "all")) == [("carol", 1000), ("alice", 700), ("bob", 350)]


def test_each_row_names_the_player_by_id_and_username_with_a_rank(api, played):
    alice, bob, carol = played
    rows = board(api, "all")
    assert [(r["rank"], r["player"], r["name"]) for r in rows] == [
        (1, carol.pk, "carol"),
        (2, alice.pk, "alice"),
        (3, bob.pk, "bob"),
    ]


def test_the_board_answers_which_period_it_covers(api, played):
    response = api.get(BOARD, {"period": "day"})
    assert response.json()["period"] == "day"


def test_an_empty_board_is_an_empty_list(api, transactional_db):
    assert board(api, "all") == []


def test_the_board_is_public(api, played):
    assert api.get(BOARD, {"period": "all"}).status_code == 200


def test_the_board_works_for_a_logged_in_player_too(api_as, played):
    alice, _, _ = played
    assert scores(board(api_as(alice), "day")) == [("bob", 300), ("alice", 100)]


def test_the_board_shows_the_top_50_of_55_players(api, transactional_db):
    get_user_model().objects.bulk_create([get_user_model()(username=f"player{i:02d}") for i in range(1, 56)])
    users = list(get_user_model().objects.filter(username__startswith="player").order_by("username"))
    assert len(users) == 55
    for i, user in enumerate(users, start=1):
        result(user, i * 10, HOURS_2)
    rows = board(api, "all")
    assert len(rows) == 50
    assert [r["score"] for r in rows] == [i * 10 for i in range(55, 5, -1)]
    assert [r["rank"] for r in rows] == list(range(1, 51))
    assert {r["name"] for r in rows} == {f"player{i:02d}" for i in range(6, 56)}


@pytest.mark.parametrize("period", ["month", "year", "", "DAY", "all "])
def test_an_unknown_period_is_refused_with_400_naming_period(api, transactional_db, period):
    field_error(api.get(BOARD, {"period": period}), "period")


def test_the_board_is_cached_until_the_cache_is_cleared(api, played):
    alice, _, _ = played
    before = scores(board(api, "day"))
    assert before == [("bob", 300), ("alice", 100)]
    result(alice, 1000, HOURS_2)
    assert scores(board(api, "day")) == before
    cache.clear()
    assert scores(board(api, "day")) == [("alice", 1100), ("bob", 300)]


def test_each_period_is_cached_on_its_own(api, played):
    alice, _, _ = played
    board(api, "day")
    result(alice, 1000, HOURS_2)
    assert scores(board(api, "week")) == [("alice", 1300), ("bob", 350)]
    assert scores(board(api, "day")) == [("bob", 300), ("alice", 100)]


def test_a_player_with_many_games_is_listed_once_with_their_game_count(api, make_user):
    alice = make_user("alice")
    for score in (10, 20, 30):
        result(alice, score, HOURS_2)
    rows = board(api, "all")
    assert len(rows) == 1
    assert rows[0]["score"] == 60 and rows[0]["games"] == 3
