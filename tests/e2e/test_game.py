"""End to end: real Daphne, real Celery worker and beat, real Redis, real database, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import datetime

import pytest
import requests
from asgiref.sync import sync_to_async

from game.models import GameResult
from loadtest.stack import wait_http
from tests.e2e.client import Player, api, create_room, new_player
from tests.e2e.stack import BIN, LOGS, free_port, procfile_argv

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def assert_contiguous(player: Player) -> None:
    """Every broadcast after the first state follows the previous one by exactly 1."""
    state = next(f for f in player.frames if f["type"] == "state")
    seqs = [f["seq"] for f in player.broadcasts() if f["seq"] > state["seq"]]
    assert seqs == list(range(state["seq"] + 1, state["seq"] + 1 + len(seqs))), seqs


async def test_two_players_play_a_full_game_through_both_closing_paths(live):
    alice, bob = new_player(live.url), new_player(live.url)
    code = create_room(live.url, alice.token, {"rounds": 4, "answer_seconds": 1.5, "reveal_seconds": 0.2})
    await alice.connect(code)
    await bob.connect(code)
    await alice.send({"type": "start"})
    for n in range(1, 5):
        q = await bob.next("question")
        assert q["round"] == n and len(q["options"]) == 4 and "correct_option" not in q
        await alice.send({"type": "answer", "round": n, "option": 0})
        assert (await alice.next("answer_ack")) == {"type": "answer_ack", "round": n, "accepted": True}
        if n % 2:  # odd rounds: both answer, the round closes at once
            await bob.send({"type": "answer", "round": n, "option": 1})
            assert (await bob.next("answer_ack"))["accepted"] is True
        result = await alice.next("round_result")
        closed_at = time.time() * 1000
        assert result["round"] == n
        assert [e["player"] for e in result["results"]] == [alice.user_id, bob.user_id]
        if n % 2:
            assert closed_at < q["deadline"], "the all-answered path must not wait for the deadline"
        else:
            assert closed_at >= q["deadline"] - 50, (closed_at, q, result, bob.frames[-6:])
            assert result["results"][1]["option"] is None
    over = await alice.next("game_over")
    assert [s["rank"] for s in over["standings"]] == [1, 2]
    assert_contiguous(alice)
    assert_contiguous(bob)
    await alice.close()
    await bob.close()
    for p in (alice, bob):
        rows = await asyncio.to_thread(lambda p=p: api(live.url, p.token, "GET", "/api/me/results/").json())
        assert len(rows) == 1 and rows[0]["room"] == code and rows[0]["rounds"] == 4
    assert await GameResult.objects.filter(room=code).acount() == 2


async def test_a_player_who_reconnects_mid_game_gets_the_state_and_plays_on(live):
    alice, bob = new_player(live.url), new_player(live.url)
    code = create_room(live.url, alice.token, {"rounds": 2, "answer_seconds": 3, "reveal_seconds": 0})
    await alice.connect(code)
    await bob.connect(code)
    await alice.send({"type": "start"})
    q1 = await bob.next("question")
    await bob.send({"type": "answer", "round": 1, "option": 2})
    await bob.next("answer_ack")
    await bob.close()
    left = await alice.next("player_left")
    assert left["player"]["id"] == bob.user_id
    # Bob comes back on the other web instance.
    state = await bob.connect(code, base=live.web_urls[1])
    assert state["status"] == "playing" and state["round"] == 1
    assert state["question"]["text"] == q1["text"] and state["question"]["answered"] is True
    assert {p["id"]: p["connected"] for p in state["players"]} == {alice.user_id: True, bob.user_id: True}
    await alice.send({"type": "answer", "round": 1, "option": 0})
    await bob.next("round_result")
    q2 = await bob.next("question")
    assert q2["round"] == 2
    await bob.send({"type": "answer", "round": 2, "option": 0})
    await alice.send({"type": "answer", "round": 2, "option": 0})
    await bob.next("game_over")
    await alice.close()
    await bob.close()
    assert await GameResult.objects.filter(room=code).acount() == 2


async def test_two_daphne_processes_serving_one_room_behave_as_one(live):
    players = [new_player(live.url) for _ in range(4)]
    host = players[0]
    code = create_room(live.url, host.token, {"rounds": 3, "answer_seconds": 2, "reveal_seconds": 0})
    for i, p in enumerate(players):
        await p.connect(code, base=live.web_urls[i % 2])
    await host.send({"type": "start"})
    for n in range(1, 4):
        await asyncio.gather(*(p.next("question") for p in players))
        for i, p in enumerate(players):
            await p.send({"type": "answer", "round": n, "option": i % 4})
        results = await asyncio.gather(*(p.next("round_result") for p in players))
        assert all(r == results[0] for r in results), "every process relays the same result"
        assert results[0]["results"][0]["player"] == host.user_id
    overs = await asyncio.gather(*(p.next("game_over") for p in players))
    assert all(o == overs[0] for o in overs)
    for p in players:
        assert_contiguous(p)
        await p.close()
    assert await GameResult.objects.filter(room=code).acount() == 4


async def test_a_round_closes_exactly_once_when_answers_race_the_timer(live):
    rounds = 12
    players = [new_player(live.url) for _ in range(4)]
    observer = players[0]
    code = create_room(
        live.url, observer.token, {"rounds": rounds, "answer_seconds": 0.5, "reveal_seconds": 0}
    )
    for i, p in enumerate(players):
        await p.connect(code, base=live.web_urls[i % 2])
    await observer.send({"type": "start"})
    for n in range(1, rounds + 1):
        q = await observer.next("question")
        assert q["round"] == n
        # Everybody answers right at the deadline, racing the Celery timer.
        delay = (q["deadline"] - time.time() * 1000 - 3) / 1000
        await asyncio.sleep(max(0.0, delay))
        await asyncio.gather(*(p.send({"type": "answer", "round": n, "option": n % 4}) for p in players))
        result = await observer.next("round_result")
        assert result["round"] == n
    for p in players:  # every player's connection got the end (two web processes deliver)
        await p.next("game_over")
    await asyncio.sleep(0.5)  # let any duplicate broadcast arrive if there were one
    for p in players:
        kinds = [f["type"] for f in p.broadcasts()]
        assert kinds.count("round_result") == rounds
        assert kinds.count("game_over") == 1
        assert_contiguous(p)
        await p.close()
    assert await GameResult.objects.filter(room=code).acount() == 4


async def test_a_round_whose_worker_died_is_closed_by_the_sweeper_on_another_worker(live):
    alice = new_player(live.url)
    code = create_room(live.url, alice.token, {"rounds": 1, "answer_seconds": 3, "reveal_seconds": 0})
    await alice.connect(code)
    await alice.send({"type": "start"})
    q = await alice.next("question")
    # The worker holding the round's timer dies; another worker takes over the sweeps.
    live.stop("worker1", signal.SIGKILL)
    live.start_worker("worker2")
    result = await alice.next("round_result", timeout=20)
    assert result["round"] == 1
    assert time.time() * 1000 >= q["deadline"]
    await alice.next("game_over")
    await alice.close()
    live.rename_worker("worker2", "worker1")  # a worker under the usual name for later tests


async def test_a_worker_replaced_by_one_started_beside_it_keeps_every_deadline(live):
    # `make deploy` starts the new release's workers beside the old ones; then it makes each
    # old one stop taking tasks (nuxtest/worker_drain.py) and only then stops it
    # (deploy/rollout.sh): the new worker's timer pump and consumer take the deadlines over
    # at once. Replaced one after the other, the game went 5-6 s without a pump and rounds
    # closed up to 5 s late (README, Deploy), past GAME.md's 1 s; stopped without the drain,
    # the task its last broker receive took waited for the end of its shutdown (1 s late).
    alice = new_player(live.url)
    rounds = 12
    code = create_room(live.url, alice.token, {"rounds": rounds, "answer_seconds": 0.5, "reveal_seconds": 0})
    await alice.connect(code)
    # The new release's worker, under a node name of its own (the drain goes by node name,
    # and `worker1` may already be the node `worker2` of the sweeper test).
    live.start_worker("worker_handover")
    old, node = live.procs["worker1"], live.worker_nodes["worker1"]
    exited_at: list[float] = []

    async def watch_exit() -> None:
        while old.poll() is None:
            await asyncio.sleep(0.02)
        exited_at.append(time.time() * 1000)

    try:
        await alice.send({"type": "start"})
        await alice.next("question")
        drain = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "python"), "-m", "nuxtest.worker_drain", node],
            env=live.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert drain.returncode == 0, drain.stderr
        assert "stopped taking tasks" in drain.stdout
        os.killpg(old.pid, signal.SIGTERM)  # its warm shutdown, mid-game
        watcher = asyncio.create_task(watch_exit())
        await alice.next("game_over", timeout=30)
        await asyncio.wait_for(watcher, 10)
        assert old.returncode == 0
    finally:
        await alice.close()
        live.stop("worker1")  # (gone already, unless the test failed)
        live.rename_worker("worker_handover", "worker1")  # the usual name for later tests

    deadlines = {f["round"]: f["deadline"] for f in alice.frames if f["type"] == "question"}
    closed_at = {
        f["round"]: at
        for f, at in zip(alice.frames, alice.received_at, strict=True)
        if f["type"] == "round_result"
    }
    assert sorted(closed_at) == sorted(deadlines) == list(range(1, rounds + 1))
    late = {n: round(closed_at[n] - deadlines[n]) for n in deadlines}
    # The hand-over happened inside the game: several deadlines fell after the old worker exited.
    assert sum(deadline > exited_at[0] for deadline in deadlines.values()) >= 3, (exited_at, deadlines)
    assert max(late.values()) < 1000, late


def test_worker_drain_says_so_when_no_worker_answers(live):
    drain = subprocess.run(
        [str(BIN / "python"), "-m", "nuxtest.worker_drain", "nobody@nowhere"],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert drain.returncode == 1
    assert "nobody@nowhere did not answer" in drain.stderr


async def two_players_on(live, web: str, **room_settings: object) -> tuple[str, str, Player, Player]:
    """A web process of its own (`web`), a room on it and two players connected there:
    its URL, the room's code, the host and the other player."""
    spare = live.start_web(web)
    alice, bob = new_player(live.url), new_player(live.url)
    code = create_room(live.url, alice.token, room_settings)
    await alice.connect(code, base=spare)
    await bob.connect(code, base=spare)
    return spare, code, alice, bob


async def test_a_web_process_restarted_mid_round_hands_its_players_to_another(live):
    # Round 1 must outlast the drain and both reconnects (rounds 2 and 3 close on answers).
    spare, code, alice, bob = await two_players_on(
        live, "web3", rounds=3, answer_seconds=15, reveal_seconds=0
    )
    await alice.send({"type": "start"})
    await alice.next("question")
    await alice.send({"type": "answer", "round": 1, "option": 0})
    assert (await alice.next("answer_ack"))["accepted"] is True

    # The process serving both players is told to stop, as an orchestrator would.
    proc = live.procs["web3"]
    # In a thread: the clients, on this event loop, answer the server's close meanwhile.
    await asyncio.to_thread(live.stop, "web3", signal.SIGTERM)
    live.web_urls.remove(spare)
    assert proc.returncode == 0, "Daphne must exit by itself once drained, not be killed"
    for player in (alice, bob):
        assert player._reader is not None
        await asyncio.wait([player._reader], timeout=5)  # the client library reports 1012 as an error close
        assert player.ws is not None and player.ws.close_code == 1012

    # The drain is the process's, not a player's: its lines name no room, user or trace
    # (its handler was installed by the first connection, alice's).
    text = (LOGS / "web3.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    drain = [r for r in lines if r.get("event") in {"web_draining", "web_drained"}]
    assert [r["event"] for r in drain] == ["web_draining", "web_drained"]
    for record in drain:
        assert not {k for k in ("room", "user_id", "round", "trace_id") if record.get(k) is not None}, record

    # They reconnect (the load balancer sends them elsewhere) and the game goes on.
    state = await alice.connect(code, base=live.web_urls[0])
    assert state["status"] == "playing" and state["round"] == 1
    assert state["question"]["answered"] is True
    state = await bob.connect(code, base=live.web_urls[1])
    assert state["question"]["answered"] is False
    await bob.send({"type": "answer", "round": 1, "option": 1})
    for n in (2, 3):
        await alice.next("question")
        await alice.send({"type": "answer", "round": n, "option": 0})
        await bob.send({"type": "answer", "round": n, "option": 0})
    over = await alice.next("game_over")
    assert len(over["standings"]) == 2
    await alice.close()
    await bob.close()
    rows = await sync_to_async(lambda: list(GameResult.objects.filter(room=code)))()
    assert sorted(r.user_id for r in rows) == sorted([alice.user_id, bob.user_id])


async def test_a_draining_web_process_refuses_new_connections_until_it_exits(live):
    # Players sent away with 1012 reconnect at once; a load balancer that hands them back to
    # the stopping process (nginx round robin does, until a connection is refused) must find
    # it closed, not have them admitted and cut off with 1006 when it exits.
    spare, code, alice, bob = await two_players_on(live, "web6", rounds=2, answer_seconds=15)
    port = int(spare.rsplit(":", 1)[1])
    # A third connection of alice's that never reads: it does not answer the drain's close,
    # so the drain waits for it (autobahn's close handshake timeout) and the window in which
    # a stopping process could still accept connections is long enough to be seen.
    _, silent = await asyncio.open_connection("127.0.0.1", port)
    silent.write(
        (
            f"GET /ws/rooms/{code}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {alice.token}\r\n\r\n"
        ).encode()
    )
    await silent.drain()
    await asyncio.sleep(0.5)  # admitted: its `state` waits unread
    proc = live.procs.pop("web6")
    live.web_urls.remove(spare)
    attempts: list[tuple[float, bool, bool]] = []  # (when, connected, process still running)
    os.killpg(proc.pid, signal.SIGTERM)
    while proc.poll() is None:
        started = time.time()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except OSError:
            connected = False
        else:
            connected = True
            writer.close()
        attempts.append((started, connected, proc.poll() is None))
        await asyncio.sleep(0.01)
    assert proc.wait() == 0
    for player in (alice, bob):
        assert player._reader is not None
        await asyncio.wait([player._reader], timeout=5)
        assert player.ws is not None and player.ws.close_code == 1012
        await player.close()
    silent.close()
    lines = [
        json.loads(line) for line in (LOGS / "web6.log").read_text().splitlines() if line.startswith("{")
    ]
    draining = next(r for r in lines if r.get("event") == "web_draining")
    since = datetime.fromisoformat(draining["timestamp"].replace("Z", "+00:00")).timestamp() + 0.01
    after = [(connected, alive) for when, connected, alive in attempts if when > since]
    assert any(alive for _, alive in after), f"no attempt while the process drained: {attempts}"
    assert not any(connected for connected, _ in after), f"connected after the drain began: {attempts}"
    drained = next(r for r in lines if r.get("event") == "web_drained")
    assert "(0 connections left)" in drained["message"], drained["message"]


async def test_a_player_who_closes_right_after_answering_still_counts_and_fails_nothing(live):
    # A tab closed just after an answer, over real Daphne: the answer reaches the server
    # and is still being handled (slowed by a fault flag) when the connection is gone. The
    # answer counts, and nothing is a server error. (The narrower window where Daphne
    # raises on the ack, between the close frame and the TCP close, is tested in
    # tests/consumers/test_play.py: a socket cannot time it.)
    from tests.e2e.test_telemetry import manage

    spare, _, alice, bob = await two_players_on(live, "web4", rounds=1, answer_seconds=20, reveal_seconds=0)
    await alice.send({"type": "start"})
    await alice.next("question")
    await bob.next("question")
    try:
        await asyncio.to_thread(manage, live, "faults", "set", "answer_delay_ms=700")
        await asyncio.sleep(0.5)  # past the web process's flag cache (0.2 s in the stack)
        await bob.send({"type": "answer", "round": 1, "option": 2})
        await bob.close()
        left = await alice.next("player_left")
        assert left["player"]["id"] == bob.user_id
        await asyncio.sleep(0.8)  # bob's answer is handled, and its ack finds him gone
        await alice.send({"type": "answer", "round": 1, "option": 0})
        assert (await alice.next("answer_ack"))["accepted"] is True
    finally:
        await asyncio.to_thread(manage, live, "faults", "clear")
    result = await alice.next("round_result")
    assert {e["player"]: e["option"] for e in result["results"]} == {alice.user_id: 0, bob.user_id: 2}
    await alice.next("game_over")
    await alice.close()
    live.stop("web4")
    live.web_urls.remove(spare)
    text = (LOGS / "web4.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [r for r in lines if r["level"] in {"error", "critical"}] == []
    answers = [r for r in lines if r.get("event") == "answer_received"]
    assert [(r["user_id"], r["accepted"]) for r in answers] == [(bob.user_id, True), (alice.user_id, True)]


async def test_daphne_passes_large_frames_to_the_protocol_limit_and_caps_huge_ones(live):
    alice = new_player(live.url)
    code = create_room(live.url, alice.token, {})
    await alice.connect(code)
    # Over the protocol's 64 KiB: an error frame, and the connection stays open.
    await alice.send({"type": "ping", "t": 1, "pad": "x" * 100_000})
    assert (await alice.next("error"))["code"] == "message_too_large"
    await alice.send({"type": "ping", "t": 2})
    assert (await alice.next("pong"))["t"] == 2
    # Over Daphne's hard cap (1 MiB): the transport closes the connection (1009).
    await alice.send({"type": "ping", "pad": "x" * (2 * 1024 * 1024)})
    assert alice._reader is not None
    await asyncio.wait([alice._reader], timeout=10)
    # autobahn sends 1009 and drops the socket; a client still writing sees it dropped (1006).
    assert alice.ws is not None and alice.ws.close_code in {1009, 1006}
    await alice.close()
    # The player is unharmed: a new connection plays on.
    state = await alice.connect(code)
    assert state["status"] == "lobby"
    await alice.close()


async def test_the_procfiles_daphne_believes_no_x_forwarded_for_of_a_client(live):
    # `make run` has no proxy in front (NUXTEST_TRUSTED_PROXY_COUNT=0): a client's own
    # X-Forwarded-For must not pass for its address. Under Daphne's --proxy-headers it did:
    # 8.8.8.8 was refused /metrics from 127.0.0.1, and a locked-out address logged in
    # again by naming another.
    port = free_port()
    # Its own key space (the lockout below stays there) and a lockout at the first failure.
    env = {"NUXTEST_REDIS_PREFIX": f"procfile-{port}:", "NUXTEST_LOGIN_FAILURE_LIMIT": "1"}
    proc = live.start("web_procfile", procfile_argv("web", PORT=str(port)), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_http, url + "/healthz", proc, LOGS, 30)
        spoofed = await asyncio.to_thread(
            requests.get, url + "/metrics", headers={"X-Forwarded-For": "8.8.8.8"}, timeout=10
        )
        assert spoofed.status_code == 200, spoofed.text[:300]
        # The lockout's 429 says what it is on the status line too (Twisted's table lacks it).
        wrong = {"username": "nobody", "password": "not-the-password-1"}
        locked = await asyncio.to_thread(requests.post, url + "/api/auth/token/", json=wrong, timeout=10)
        assert (locked.status_code, locked.reason) == (429, "Too Many Requests"), locked.text[:300]
        # Naming another address does not lift it.
        again = await asyncio.to_thread(
            requests.post,
            url + "/api/auth/token/",
            json=wrong,
            headers={"X-Forwarded-For": "10.9.9.9"},
            timeout=10,
        )
        assert again.status_code == 429
    finally:
        live.stop("web_procfile")
