"""GET /api/me/results/: the player's own results, newest first, at most 100."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from game.models import GameResult
from tests.api.conftest import plain_error

pytestmark = pytest.mark.django_db(transaction=True)

RESULTS = "/api/me/results/"
FIELDS = {"room", "score", "rank", "correct", "rounds", "avg_answer_ms", "created_at"}


def unsaved(user, *, score: int, created_at) -> GameResult:
    """A result row for bulk_create: one of many games of the user's."""
    return GameResult(
        game_id=uuid.uuid4(),
        room="ABCDEF",
        user=user,
        score=score,
        rank=1,
        correct=1,
        rounds=5,
        avg_answer_ms=1000,
        created_at=created_at,
    )


def result(user, *, room: str = "ABCDEF", age: timedelta = timedelta(hours=1), **fields) -> GameResult:
    values = {
        "game_id": uuid.uuid4(),
        "room": room,
        "user": user,
        "score": 1234,
        "rank": 2,
        "correct": 3,
        "rounds": 5,
        "avg_answer_ms": 2750,
        "created_at": timezone.now() - age,
    }
    values.update(fields)
    return GameResult.objects.create(**values)


def test_a_player_without_games_gets_an_empty_list(api_as, make_user):
    response = api_as(make_user("alice")).get(RESULTS)
    assert response.status_code == 200, response.content
    assert response.json() == []


def test_each_result_has_exactly_the_documented_fields_and_values(api_as, make_user):
    alice = make_user("alice")
    row = result(alice, room="QWERTY", score=1500, rank=1, correct=4, rounds=6, avg_answer_ms=1875)
    response = api_as(alice).get(RESULTS)
    assert response.status_code == 200, response.content
    [item] = response.json()
    assert set(item) == FIELDS
    assert {k: v for k, v in item.items() if k != "created_at"} == {
        "room": "QWERTY",
        "score": 1500,
        "rank": 1,
        "correct": 4,
        "rounds": 6,
        "avg_answer_ms": 1875,
    }
    row.refresh_from_db()
    created = parse_datetime(item["created_at"])
    assert created is not None and created.tzinfo is not None
    assert created == row.created_at


def test_created_at_has_one_format_whatever_its_fraction_of_a_second(api_as, make_user):
    # isoformat() left the fraction out at a whole second (one game in a thousand ends on
    # one, its time being in ms): a client parsing one strict format failed on those rows.
    alice = make_user("alice")
    whole = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    result(alice, created_at=whole)
    result(alice, created_at=whole - timedelta(minutes=1, milliseconds=292))
    stamps = [item["created_at"] for item in api_as(alice).get(RESULTS).json()]
    assert [len(s) for s in stamps] == [len("2026-12-05T00:25:43.000000Z")] * 2, stamps
    assert stamps[0].endswith(".000000Z") and stamps[1].endswith(".708000Z"), stamps


def test_a_result_without_accepted_answers_has_a_null_mean_time(api_as, make_user):
    alice = make_user("alice")
    result(alice, avg_answer_ms=None, correct=0, score=0)
    [item] = api_as(alice).get(RESULTS).json()
    assert item["avg_answer_ms"] is None


def test_only_the_callers_results_are_listed(api_as, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    result(alice, room="AAAAAA")
    result(bob, room="BBBBBB")
    result(alice, room="CCCCCC", age=timedelta(days=2))
    assert sorted(r["room"] for r in api_as(alice).get(RESULTS).json()) == ["AAAAAA", "CCCCCC"]
    assert [r["room"] for r in api_as(bob).get(RESULTS).json()] == ["BBBBBB"]


def test_results_are_listed_newest_first(api_as, make_user):
    alice = make_user("alice")
    result(alice, room="MIDDLE", age=timedelta(days=3))
    result(alice, room="NEWEST", age=timedelta(minutes=5))
    result(alice, room="OLDEST", age=timedelta(days=30))
    rows = api_as(alice).get(RESULTS).json()
    assert [r["room"] for r in rows] == ["NEWEST", "MIDDLE", "OLDEST"]
    stamps = [parse_datetime(r["created_at"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)


def test_at_most_the_newest_100_results_are_listed(api_as, make_user):
    alice = make_user("alice")
    now = timezone.now()
    GameResult.objects.bulk_create(
        [unsaved(alice, score=i, created_at=now - timedelta(minutes=i)) for i in range(105)]
    )
    rows = api_as(alice).get(RESULTS).json()
    assert len(rows) == 100
    assert [r["score"] for r in rows] == list(range(100))


def test_results_need_authentication(api, make_user):
    result(make_user("alice"))
    body = plain_error(api.get(RESULTS), 401)
    assert "room" not in body


def test_a_logged_in_browser_session_may_read_its_results(make_user):
    from rest_framework.test import APIClient

    alice = make_user("alice")
    result(alice, room="SESSON")
    client = APIClient()
    client.force_login(alice)
    response = client.get(RESULTS)
    assert response.status_code == 200, response.content
    assert [r["room"] for r in response.json()] == ["SESSON"]


def test_the_history_is_read_newest_first_from_its_index_not_sorted(make_user):
    # With only the foreign key's index, the database read every result of the player and
    # sorted them: the history of the busiest players (here 3,000 games) grew with each game.
    from django.contrib.auth import get_user_model
    from django.db import connection

    from game.api.views import history_query

    players = get_user_model().objects.bulk_create(
        get_user_model()(username=f"p{i}", password="!") for i in range(40)
    )
    now = timezone.now()
    GameResult.objects.bulk_create(
        unsaved(player, score=i, created_at=now - timedelta(minutes=i))
        for player in players
        for i in range(3000 if player == players[7] else 100)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            {"postgresql": "ANALYZE game_gameresult", "mysql": "ANALYZE TABLE game_gameresult"}.get(
                connection.vendor, "ANALYZE"
            )
        )
        if connection.vendor == "mysql":
            cursor.fetchall()
    plan = history_query(players[7].pk).explain()
    assert "gameresult_user_created" in plan, plan
    if connection.vendor == "postgresql":
        assert "Sort" not in plan, plan
