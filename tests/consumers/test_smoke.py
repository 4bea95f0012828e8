"""A first game over the real ASGI app, real Redis and real channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from game import services
from tests.conftest import recv, recv_until, send, ws_join

pytestmark = pytest.mark.django_db(transaction=True)


async def test_two_players_play_a_round_to_the_end(questions, make_user):
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    room = await services.room_create(host_id=alice.pk, settings_raw={"rounds": 1, "answer_seconds": 5})
    a, state_a = await ws_join(room.code, alice)
    assert state_a["status"] == "lobby" and state_a["host"] == alice.pk
    b, _ = await ws_join(room.code, bob)
    joined = await recv(a)
    assert joined["type"] == "player_joined" and joined["seq"] == state_a["seq"] + 1
    await send(a, {"type": "start"})
    q = await recv_until(b, "question")
    await send(a, {"type": "answer", "round": q["round"], "option": 0})
    await send(b, {"type": "answer", "round": q["round"], "option": 1})
    result = await recv_until(b, "round_result")
    assert [r["player"] for r in result["results"]] == [alice.pk, bob.pk]
    over = await recv_until(b, "game_over")
    assert {s["player"] for s in over["standings"]} == {alice.pk, bob.pk}
    await a.disconnect()
    await b.disconnect()
