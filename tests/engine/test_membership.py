"""Lobby membership and connections (GAME.md, Lobby, Quick match, Disconnects)."""

from __future__ import annotations

import pytest

from game.engine import rules
from game.engine.model import LOBBY, PLAYING, room_to_dict
from tests.engine.support import (
    HOST,
    T0,
    conn_of,
    join,
    leave,
    name_of,
    new_room,
    playing_room,
)


def player_ids(room):
    return [p.id for p in room.players]


def test_a_new_room_is_an_empty_lobby_that_nobody_is_connected_to():
    room = new_room()
    assert room.status == LOBBY
    assert room.players == []
    assert room.seq == 0
    assert room.empty_since == T0


def test_the_host_becomes_a_member_at_their_first_connection():
    room = new_room()
    join(room, HOST)
    assert player_ids(room) == [HOST]


def test_member_add_adds_a_new_player_and_says_so():
    room = new_room()
    assert rules.member_add(room, player_id=5, name="five", now=T0) is True
    assert player_ids(room) == [5]
    assert room.player(5).name == "five"


def test_member_add_refuses_a_newcomer_to_a_full_room():
    room = new_room(max_players=2)
    join(room, 1, 2)
    before = room_to_dict(room)
    with pytest.raises(rules.RoomFull):
        rules.member_add(room, player_id=3, name="three", now=T0)
    assert room_to_dict(room) == before


def test_a_disconnected_member_still_takes_a_place_in_the_room():
    room = new_room(max_players=2)
    join(room, 1, 2)
    leave(room, 2)
    with pytest.raises(rules.RoomFull):
        rules.member_add(room, player_id=3, name="three", now=T0)


def test_a_one_player_room_is_full_with_its_host():
    room = new_room(max_players=1)
    join(room, HOST)
    with pytest.raises(rules.RoomFull):
        join(room, 2)
    assert player_ids(room) == [HOST]


def test_member_add_refuses_a_newcomer_once_the_game_has_started():
    room = playing_room(1, 2)
    with pytest.raises(rules.GameAlreadyStarted):
        rules.member_add(room, player_id=3, name="three", now=T0)
    assert player_ids(room) == [1, 2]


def test_connect_refuses_a_newcomer_once_the_game_has_started():
    room = playing_room(1, 2)
    seq = room.seq
    with pytest.raises(rules.GameAlreadyStarted):
        join(room, 3)
    assert room.seq == seq


def test_member_add_accepts_an_existing_member_of_a_full_room_without_change():
    room = new_room(max_players=2)
    join(room, 1, 2)
    assert rules.member_add(room, player_id=2, name=name_of(2), now=T0) is False
    assert player_ids(room) == [1, 2]


def test_member_add_accepts_an_existing_member_of_a_started_game():
    room = playing_room(1, 2)
    assert rules.member_add(room, player_id=2, name=name_of(2), now=T0) is False
    assert player_ids(room) == [1, 2]


def test_a_member_can_reconnect_to_a_started_game_and_is_announced():
    room = playing_room(1, 2)
    leave(room, 2)
    seq = room.seq
    events = join(room, 2)
    assert events == [{"type": "player_joined", "player": {"id": 2, "name": name_of(2)}, "seq": seq + 1}]
    assert room.player(2).connected


def test_every_connection_a_member_opens_emits_player_joined_and_adds_no_member():
    room = new_room()
    first = rules.connect(room, player_id=1, name="one", conn="a|1", now=T0)
    second = rules.connect(room, player_id=1, name="one", conn="b|2", now=T0)
    assert first == [{"type": "player_joined", "player": {"id": 1, "name": "one"}, "seq": 1}]
    assert second == [{"type": "player_joined", "player": {"id": 1, "name": "one"}, "seq": 2}]
    assert room.player(1).conns == ["a|1", "b|2"]
    assert player_ids(room) == [1]


def test_connecting_the_same_connection_twice_is_a_no_op():
    room = new_room()
    rules.connect(room, player_id=1, name="one", conn="a|1", now=T0)
    assert rules.connect(room, player_id=1, name="one", conn="a|1", now=T0) == []
    assert room.player(1).conns == ["a|1"]


def test_disconnect_emits_player_left_only_when_the_last_connection_closes():
    room = new_room()
    rules.connect(room, player_id=1, name="one", conn="a|1", now=T0)
    rules.connect(room, player_id=1, name="one", conn="b|2", now=T0)
    assert rules.disconnect(room, player_id=1, conn="a|1", now=T0) == []
    assert room.player(1).connected
    last = rules.disconnect(room, player_id=1, conn="b|2", now=T0)
    assert last == [{"type": "player_left", "player": {"id": 1, "name": "one"}, "seq": 3}]
    assert not room.player(1).connected


def test_a_player_who_left_stays_a_member():
    room = new_room()
    join(room, 1, 2)
    leave(room, 2)
    assert player_ids(room) == [1, 2]


def test_player_joined_is_emitted_again_when_a_player_comes_back():
    room = new_room()
    join(room, 1)
    leave(room, 1)
    events = join(room, 1)
    assert [e["type"] for e in events] == ["player_joined"]
    assert events[0]["seq"] == 3


def test_disconnecting_an_unknown_connection_or_a_non_member_does_nothing():
    room = new_room()
    join(room, 1)
    assert rules.disconnect(room, player_id=1, conn="nope", now=T0) == []
    assert rules.disconnect(room, player_id=99, conn=conn_of(99), now=T0) == []
    assert room.player(1).connected
    assert room.seq == 1


def test_empty_since_is_cleared_on_connect_and_set_when_the_last_player_disconnects():
    room = new_room()
    join(room, 1, 2, now=T0 + 10)
    assert room.empty_since is None
    leave(room, 1, now=T0 + 20)
    assert room.empty_since is None
    leave(room, 2, now=T0 + 30)
    assert room.empty_since == T0 + 30
    join(room, 2, now=T0 + 40)
    assert room.empty_since is None


def test_empty_since_is_set_when_everyone_leaves_a_game():
    room = playing_room(1, 2)
    leave(room, 1, now=T0 + 5)
    leave(room, 2, now=T0 + 7)
    assert room.status == PLAYING
    assert room.empty_since == T0 + 7


def test_a_quick_room_arms_its_start_timer_when_the_second_member_arrives():
    room = new_room(quick=True, max_players=4)
    rules.member_add(room, player_id=1, name="one", now=T0, quick_start_ms=5_000)
    assert room.next_at is None
    rules.member_add(room, player_id=2, name="two", now=T0 + 100, quick_start_ms=5_000)
    assert room.next_at == T0 + 5_100


def test_a_third_quick_match_member_does_not_move_the_start_timer():
    room = new_room(quick=True, max_players=4)
    for i, pid in enumerate((1, 2, 3)):
        rules.member_add(room, player_id=pid, name=name_of(pid), now=T0 + i * 1000, quick_start_ms=5_000)
    assert room.next_at == T0 + 1000 + 5_000


def test_a_returning_member_does_not_arm_the_quick_start_timer():
    room = new_room(quick=True, max_players=4)
    rules.member_add(room, player_id=1, name="one", now=T0, quick_start_ms=5_000)
    rules.member_add(room, player_id=1, name="one", now=T0, quick_start_ms=5_000)
    assert room.next_at is None


def test_a_room_that_is_not_quick_match_never_arms_a_start_timer():
    room = new_room()
    for pid in (1, 2, 3):
        rules.member_add(room, player_id=pid, name=name_of(pid), now=T0, quick_start_ms=5_000)
    assert room.next_at is None


def test_a_quick_seat_taken_by_connecting_arms_the_timer_for_later_not_now():
    room = new_room(quick=True, max_players=4)
    rules.connect(room, player_id=1, name="p1", conn="i|1", now=T0, quick_start_ms=5000)
    rules.connect(room, player_id=2, name="p2", conn="i|2", now=T0, quick_start_ms=5000)
    assert room.next_at == T0 + 5000
    assert rules.due(room, now=T0, grace_ms=0, abandon_ms=60_000, lobby_idle_ms=600_000) is None
