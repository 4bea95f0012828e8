"""Telemetry end to end: what real processes export after a real game (issue: instrumentation).

The stack (tests/e2e/stack.py) runs with JSON logs, OTLP export to a local receiver and
Sentry pointed at a local stand-in; these tests read what arrives there, and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.client import PASSWORD, Player, api, create_room, new_player, signup
from tests.e2e.stack import BIN, LOGS, ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

Sample = tuple[str, dict[str, str], float]
REQUIRED_LOG_FIELDS = ("timestamp", "level", "logger", "message", "event", "service")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
SECRET_NAME = re.compile(r"authorization|cookie|password|passwd|token|secret", re.I)


def targets(live: Stack) -> list[str]:
    return [f"{url}/metrics" for url in live.web_urls] + list(live.worker_metrics.values())


def scrape(url: str) -> list[Sample]:
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    ]


def scrape_all(live: Stack) -> list[Sample]:
    out: list[Sample] = []
    for url in targets(live):
        try:
            out.extend(scrape(url))
        except requests.ConnectionError:
            pass  # a worker stopped by an earlier test
    return out


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


@dataclass
class Game:
    code: str
    players: list[Player]
    names: list[str]
    log_offsets: dict[Path, int]


def log_offsets() -> dict[Path, int]:
    return {p: p.stat().st_size for p in LOGS.glob("*.log")}


def new_log_lines(since: dict[Path, int]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in LOGS.glob("*.log"):
        with open(path, "rb") as f:
            f.seek(since.get(path, 0))
            out[path.stem] = [line for line in f.read().decode().splitlines() if line.strip()]
    return out


async def play(live: Stack) -> Game:
    """Two players, two rounds: round 1 closed by both answers, round 2 by the deadline (worker)."""
    offsets = log_offsets()
    names = []
    players = []
    for _ in range(2):
        name, token, user_id = signup(live.url)
        names.append(name)
        players.append(Player(base=live.url, token=token, user_id=user_id))
    alice, bob = players
    code = create_room(live.url, alice.token, {"rounds": 2, "answer_seconds": 1.5, "reveal_seconds": 0})
    await alice.connect(code)
    await bob.connect(code, base=live.web_urls[1])
    await alice.send({"type": "start"})
    await alice.next("question")
    await alice.send({"type": "answer", "round": 1, "option": 0})
    await alice.next("answer_ack")
    await bob.send({"type": "answer", "round": 1, "option": 1})
    await bob.next("answer_ack")
    assert (await alice.next("round_result"))["round"] == 1
    await alice.next("question")
    await alice.send({"type": "answer", "round": 2, "option": 2})
    await alice.next("answer_ack")
    assert (await alice.next("round_result"))["round"] == 2
    await alice.next("game_over")
    await bob.next("game_over")
    for p in players:
        await p.close()
    return Game(code=code, players=players, names=names, log_offsets=offsets)


def spans_of(otlp: Any, predicate: Any, timeout: float = 15, *, complete: Any = None) -> list[dict[str, Any]]:
    """Received spans, once at least one matches `predicate` and `complete(spans)` holds.

    The exporters batch, each process on its own timer: a span seen does not mean the spans
    of the same trace from other processes have arrived.
    """
    deadline = time.monotonic() + timeout
    while True:
        spans = otlp.snapshot()
        if any(predicate(s) for s in spans) and (complete is None or complete(spans)):
            return spans
        if time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def manage(live: Stack, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=live.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


async def test_a_played_game_shows_in_every_family_of_metrics(live):
    before = scrape_all(live)
    await play(live)
    deadline = time.monotonic() + 10
    while True:  # the worker's deadline task and result write may finish a moment later
        after = scrape_all(live)
        if (
            total(after, "nuxtest_results_written_total") - total(before, "nuxtest_results_written_total")
            >= 2
        ):
            break
        assert time.monotonic() < deadline, "results never counted"
        await asyncio.sleep(0.3)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Game: 3 answers given (2 correct or wrong each...), 1 missing; one round per trigger.
    assert (
        delta("nuxtest_answers_total", outcome="correct") + delta("nuxtest_answers_total", outcome="wrong")
        == 3
    )
    assert delta("nuxtest_answers_total", outcome="missing") >= 1
    assert delta("nuxtest_rounds_closed_total", trigger="all_answered") >= 1
    assert delta("nuxtest_rounds_closed_total", trigger="deadline") >= 1
    assert delta("nuxtest_round_close_lag_seconds_count") >= 1
    assert delta("nuxtest_answer_time_seconds_count") >= 3
    assert delta("nuxtest_games_started_total", mode="private") >= 1
    assert delta("nuxtest_games_finished_total", outcome="completed") >= 1
    assert delta("nuxtest_results_written_total") >= 2
    # WebSockets.
    assert delta("nuxtest_ws_connects_total", outcome="accepted") >= 2
    assert delta("nuxtest_ws_frames_received_total", type="answer") == 3
    assert delta("nuxtest_ws_frames_received_total", type="start") == 1
    assert delta("nuxtest_ws_frames_sent_total", type="question") >= 4
    assert delta("nuxtest_ws_frames_sent_total", type="answer_ack") == 3
    assert delta("nuxtest_ws_message_duration_seconds_count", type="answer") == 3
    assert delta("nuxtest_game_actions_total", action="answer", outcome="ok") == 3
    assert delta("nuxtest_ws_disconnects_total") >= 2
    # Channel layer: every broadcast of the game went through a timed group_send.
    assert delta("nuxtest_channel_layer_group_send_duration_seconds_count") >= 8
    assert total(after, "nuxtest_channel_layer_dropped_messages_total") == 0
    # Celery: the deadline task ran in the prefork worker and was counted there.
    assert delta("nuxtest_celery_tasks_total", task="game.tasks.round_deadline", state="success") >= 1
    assert delta("nuxtest_celery_task_duration_seconds_count", task="game.tasks.round_deadline") >= 1
    web = scrape(f"{live.url}/metrics")
    assert total(web, "nuxtest_celery_workers_online") >= 1
    assert any(n == "nuxtest_celery_queue_length" for n, _, _ in web)
    # The worker's pump sent the game's timers: none waits a second past its due time.
    assert total(web, "nuxtest_timers_overdue_seconds") < 1.0
    assert any(n == "nuxtest_rooms" and lab["status"] == "finished" for n, lab, _ in web)
    assert any(n == "nuxtest_build_info" and lab["version"] and lab["commit"] for n, lab, _ in web)
    # Every web instance and worker serves its own clock's offset from Redis's: one series
    # each (the processes share this host's clock, so they agree to within round trips).
    offsets = []
    for url in targets(live):
        with contextlib.suppress(requests.ConnectionError):  # a worker stopped by an earlier test
            (offset,) = [v for n, _, v in scrape(url) if n == "nuxtest_clock_offset_seconds"]
            offsets.append(offset)
    assert len(offsets) >= 3, offsets
    assert max(offsets) - min(offsets) < 0.05, offsets
    # The web process's event loop is watched from its first connection (every 100 ms).
    assert total(web, "nuxtest_event_loop_lag_seconds_count") >= 1
    # django-prometheus's HTTP families are there beside the project's own.
    assert total(web, "django_http_requests_total_by_method_total", method="POST") >= 1
    # OpenMetrics exposition carries trace-id exemplars on the latency histograms.
    om = (
        requests.get(
            f"{live.url}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        ).text
        + requests.get(
            f"{live.web_urls[1]}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        ).text
    )
    assert re.search(
        r'^nuxtest_ws_message_duration_seconds_bucket\{.*\} \d+(\.\d+)? # \{trace_id="[0-9a-f]{32}"\}',
        om,
        re.M,
    )


async def test_no_label_of_any_series_names_a_user_room_session_or_free_text(live):
    game = await play(live)
    identities = {
        game.code,
        *game.names,
        *(p.token for p in game.players),
    }
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, labels, _ in scrape_all(live):
        for label, value in labels.items():
            assert label not in {
                "user",
                "user_id",
                "room",
                "session",
                "token",
                "username",
                "question",
            }, (
                name,
                label,
            )
            assert value not in identities, (name, label, value)
            assert len(value) <= 100, (name, label, value)
            values[(name, label)].add(value)
    for (name, label), seen in values.items():
        assert len(seen) <= 60, (name, label, sorted(seen)[:10])


async def test_every_log_line_is_json_and_one_answer_shares_its_trace_id(live):
    game = await play(live)
    await asyncio.sleep(1.0)  # the worker logs the last task's end a moment later
    lines = new_log_lines(game.log_offsets)
    assert lines.get("web1") and any(lines.get(k) for k in lines if k.startswith("worker"))
    records: list[dict[str, Any]] = []
    for source, text_lines in lines.items():
        for line in text_lines:
            try:
                record = json.loads(line)
            except ValueError:
                pytest.fail(f"{source}: not JSON: {line[:200]}")
            assert isinstance(record, dict), line
            for field in REQUIRED_LOG_FIELDS:
                assert record.get(field) not in (None, ""), (source, field, line[:300])
            # On every line too, null where no span was active (OBSERVABILITY.md's field list).
            for field in ("trace_id", "span_id"):
                assert field in record, (source, field, line[:300])
                assert record[field] is None or re.fullmatch(r"[0-9a-f]+", record[field]), line[:300]
            assert RFC3339_UTC.match(record["timestamp"]), record["timestamp"]
            assert SNAKE.match(record["event"]), record["event"]
            assert record["level"] in {"debug", "info", "warning", "error", "critical"}
            assert PASSWORD not in line and all(p.token not in line for p in game.players)
            records.append(record)
    bob = game.players[1]
    # Bob's round-1 answer closed the round: its log lines share one trace id.
    answer = next(
        r
        for r in records
        if r["event"] == "answer_received" and r.get("user_id") == bob.user_id and r.get("round") == 1
    )
    assert re.fullmatch(r"[0-9a-f]{32}", answer["trace_id"]) and answer.get("room") == game.code
    closed = next(
        r for r in records if r["event"] == "round_closed" and r.get("room") == game.code and r["round"] == 1
    )
    assert closed["trigger"] == "all_answered"
    assert closed["trace_id"] == answer["trace_id"]
    # Round 2 closed by the worker's deadline task, logged by the worker with its own trace.
    late = next(
        r for r in records if r["event"] == "round_closed" and r.get("room") == game.code and r["round"] == 2
    )
    assert late["service"] == "worker" and late["trigger"] == "deadline" and late["trace_id"]
    assert {r["service"] for r in records} >= {"web", "worker"}


def test_a_new_worker_serves_every_game_task_s_failures_at_zero(live):
    # rate() cannot count a series' first value: a task's first failure went unseen by
    # NuxtestCeleryTaskFailures while the failure series did not exist yet.
    live.start_worker("worker_fresh")
    try:
        scraped = scrape(live.worker_metrics["worker_fresh"])
    finally:
        live.stop("worker_fresh")
        live.worker_metrics.pop("worker_fresh", None)
    samples = {(lab["task"], lab["state"]): v for n, lab, v in scraped if n == "nuxtest_celery_tasks_total"}
    for task in ("game.tasks.round_deadline", "game.tasks.round_advance", "game.tasks.results_store"):
        assert samples.get((task, "failure")) == 0, sorted(samples)


def test_a_worker_told_to_stop_says_so_in_a_json_line(live):
    # Celery writes its shutdown notice past logging, from its signal handler: it was the
    # worker's one plain-text line (game.telemetry.celery_signals._say).
    live.start_worker("worker_stopping")
    try:
        live.stop("worker_stopping")
    finally:
        live.worker_metrics.pop("worker_stopping", None)
    text = (LOGS / "worker_stopping.log").read_text()
    records = []
    for line in filter(str.strip, text.splitlines()):
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line[:200]}")
    notices = [r for r in records if r["event"] == "celery_worker_notice"]
    assert [r["message"] for r in notices] == ["worker: Warm shutdown (MainProcess)"]
    assert notices[0]["service"] == "worker" and notices[0]["level"] == "info"
    assert RFC3339_UTC.match(notices[0]["timestamp"])


async def test_one_trace_holds_the_frame_the_timer_task_the_round_close_and_the_broadcast(live, otlp):
    game = await play(live)

    def worker_close(s: dict[str, Any]) -> bool:
        return (
            s["name"] == "round_close"
            and s["attributes"].get("nuxtest.room") == game.code
            and s["attributes"].get("nuxtest.round") == 2
        )

    def trace_of(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        close = next(s for s in spans if worker_close(s))
        return [s for s in spans if s["trace_id"] == close["trace_id"]]

    def deliveries_of(trace: list[dict[str, Any]], round_number: int = 2) -> list[dict[str, Any]]:
        # One span per web process that has connections in the room, naming its players.
        # The trace also holds round 1's result (the answer that closed round 1 opened round 2).
        return [
            s
            for s in trace
            if s["name"] == "ws.broadcast"
            and s["attributes"].get("nuxtest.event") == "round_result"
            and s["attributes"].get("nuxtest.round") == round_number
        ]

    def whole(spans: list[dict[str, Any]]) -> bool:
        # Every process's batch of the trace is in: the task's span (which ends after the
        # close) and each web process's delivery of the result.
        trace = trace_of(spans)
        reached = {player for s in deliveries_of(trace) for player in s["attributes"]["nuxtest.players"]}
        names = {s["name"] for s in trace}
        return "run/game.tasks.round_deadline" in names and reached >= {p.user_id for p in game.players}

    spans = spans_of(otlp, worker_close, timeout=30, complete=whole)
    close = next(s for s in spans if worker_close(s))
    assert close["service"] == "nuxtest-worker"
    trace = trace_of(spans)
    names = {s["name"] for s in trace}
    services = {s["service"] for s in trace}
    assert services >= {"nuxtest-web", "nuxtest-worker"}, services
    assert names & {"ws.answer", "ws.start"}, names  # the WebSocket frame that opened round 2
    assert "run/game.tasks.round_deadline" in names, names  # the Celery task (timer path)
    assert "group_send" in names and "ws.broadcast" in names, names
    # The broadcast of round 2's result reached both players' connections in this trace.
    deliveries = deliveries_of(trace)
    reached = {player for s in deliveries for player in s["attributes"]["nuxtest.players"]}
    assert reached >= {p.user_id for p in game.players}, deliveries
    assert sum(s["attributes"]["nuxtest.connections"] for s in deliveries) >= len(game.players)
    # Broadcasts and frames name their round (OBSERVABILITY.md's nuxtest.round): both
    # results are in the trace.
    results = [
        s for s in trace if s["name"] == "group_send" and s["attributes"]["nuxtest.event"] == "round_result"
    ]
    assert sorted(s["attributes"].get("nuxtest.round") for s in results) == [1, 2], results
    assert deliveries_of(trace, 1), "round 1's result, delivered before round 2's in each process"
    answered = [
        s for s in spans if s["name"] == "ws.answer" and s["attributes"].get("nuxtest.room") == game.code
    ]
    # Alice's and Bob's to round 1, Alice's to round 2 (exported before that round's result).
    assert sorted(s["attributes"].get("nuxtest.round") for s in answered) == [1, 1, 2], answered
    # Spans come from both processes kinds overall, and one per message handled.
    assert any(s["name"] == "ws.answer" and s["attributes"].get("nuxtest.room") == game.code for s in spans)
    # A group_send's own Redis commands make no spans: its children are the deliveries ...
    sends = {s["span_id"] for s in spans if s["name"] == "group_send"}
    assert {s["name"] for s in spans if s["parent_id"] in sends} == {"ws.broadcast"}
    # ... while a frame's own commands keep theirs (the rate limit, the compare-and-set).
    answers = {s["span_id"] for s in spans if s["name"] == "ws.answer"}
    assert "EVALSHA" in {s["name"] for s in spans if s["parent_id"] in answers}


async def test_errors_in_a_consumer_and_in_a_task_reach_sentry_tagged_and_scrubbed(live, sentry_server):
    player = new_player(live.url)
    try:
        # Consumer: the channel layer fails while an answer closes the round.
        code = await playing_alone(live, player, answer_seconds=5)
        await answer_under_faults(live, player, "channel_layer_fail=true")
        manage(live, "faults", "clear")
        event = wait_event(sentry_server, code, "1")
        assert event["tags"]["trace_id"] and event.get("environment") and event.get("release")
        # Sentry's trace link leads to the same trace as the tag.
        assert event["contexts"]["trace"]["trace_id"] == event["tags"]["trace_id"]

        # Task: the round-deadline task fails; the sweeper still closes the round (nothing lost).
        await player.close()
        timed = create_room(live.url, player.token, {"rounds": 1, "answer_seconds": 1, "reveal_seconds": 0})
        await player.connect(timed)
        manage(live, "faults", "set", "round_close_fail=true")
        await asyncio.sleep(0.5)
        await player.send({"type": "start"})
        await player.next("question")
        task_event = wait_event(sentry_server, timed, "1", timeout=20)
        assert task_event.get("server_name") == "worker" and task_event["tags"]["trace_id"]
        assert task_event["contexts"]["trace"]["trace_id"] == task_event["tags"]["trace_id"]
        assert "FaultInjected" in json.dumps(task_event)
        result = await player.next("round_result", timeout=20)  # closed by the sweeper, late
        assert result["round"] == 1
    finally:
        manage(live, "faults", "clear")
        await player.close()
    raw = sentry_server.raw_text()
    assert PASSWORD not in raw and player.token not in raw
    # Header and cookie names may appear (with "[Filtered]" values); no credential may.
    assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}", raw), "a JWT reached Sentry"
    assert not re.search(r"Bearer\s+(?!\[Filtered\])\S", raw), "a bearer credential reached Sentry"


def test_an_authenticated_request_s_span_names_its_user(live, otlp):
    # OBSERVABILITY.md's span attributes include enduser.id; Django's request span is made
    # before DRF authenticates the token, so the access-log middleware adds it.
    player = new_player(live.url)
    r = api(live.url, player.token, "POST", "/api/rooms/", json={})
    assert r.status_code == 201, r.text

    def mine(span: dict[str, Any]) -> bool:
        return span["name"].startswith("POST") and span["attributes"].get("enduser.id") == player.user_id

    spans = spans_of(otlp, mine)
    assert [s for s in spans if mine(s)], [s for s in spans if s["name"].startswith("POST")][-3:]


async def test_a_failed_handshake_reaches_sentry_with_a_trace_that_exists(live, otlp, sentry_server):
    # A handshake has no span (spans are per frame); its error once went to Sentry with no
    # trace tag and Sentry's own made-up trace id, which no exported span had.
    host, guest = new_player(live.url), new_player(live.url)
    code = create_room(live.url, host.token, {})
    await host.connect(code)
    url = f"{live.url.replace('http://', 'ws://')}/ws/rooms/{code}/"
    try:
        manage(live, "faults", "set", "channel_layer_fail=true")
        await asyncio.sleep(0.5)  # every process's copy of the flags is at most 0.2 s old
        async with connect(url, additional_headers={"Authorization": f"Bearer {guest.token}"}) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    finally:
        manage(live, "faults", "clear")
        await host.close()
    event = await asyncio.to_thread(wait_event, sentry_server, code, containing="handshake failed")
    tags = event["tags"]
    assert tags["trace_id"] and event["contexts"]["trace"]["trace_id"] == tags["trace_id"]
    spans = await asyncio.to_thread(spans_of, otlp, lambda s: s["trace_id"] == tags["trace_id"])
    (span,) = [s for s in spans if s["trace_id"] == tags["trace_id"] and s["name"] == "ws.connect"]
    assert span["attributes"]["nuxtest.room"] == code
    assert span["attributes"]["enduser.id"] == guest.user_id
    assert any(str(e.get("exception.type")).endswith("FaultInjected") for e in span["events"]), span["events"]


async def test_one_slow_answer_leads_from_its_exemplar_to_its_trace_its_log_lines_and_its_sentry_event(
    live, otlp, sentry_server
):
    """The walk the instrumentation issue is done by, on one answer: slow, and failing under it."""
    player = new_player(live.url)
    offsets = log_offsets()
    try:
        code = await playing_alone(live, player, answer_seconds=10)
        sent = time.time()
        # Slow answer handling, and the channel layer failing under the round close it causes.
        await answer_under_faults(live, player, "answer_delay_ms=700", "channel_layer_fail=true")
    finally:
        manage(live, "faults", "clear")
        await player.close()

    # From the latency histogram's exemplar (OpenMetrics) to the slow answer's trace id.
    om = requests.get(
        f"{live.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
    ).text
    slow = [
        sample.exemplar
        for family in openmetrics_families(om)
        for sample in family.samples
        if sample.name == "nuxtest_ws_message_duration_seconds_bucket"
        and sample.labels.get("type") == "answer"
        and sample.exemplar is not None
        and sample.exemplar.value >= 0.7
        and float(sample.exemplar.timestamp or 0) >= sent
    ]
    assert len(slow) == 1, slow
    trace_id = slow[0].labels["trace_id"]

    # From the trace id to the trace: the answer's frame, the round close it caused, the failure.
    def answer_span(s: dict[str, Any]) -> bool:
        return s["trace_id"] == trace_id and s["name"] == "ws.answer"

    def failed(spans: list[dict[str, Any]]) -> bool:
        return any(
            s["trace_id"] == trace_id and any("exception.type" in e for e in s["events"]) for s in spans
        )

    trace = [s for s in spans_of(otlp, answer_span, complete=failed) if s["trace_id"] == trace_id]
    answers = [s for s in trace if s["name"] == "ws.answer"]
    assert len(answers) == 1, f"no ws.answer span in the exemplar's trace {trace_id}"
    answer = answers[0]
    assert answer["service"] == "nuxtest-web"
    assert answer["attributes"]["nuxtest.room"] == code and answer["attributes"]["nuxtest.round"] == 1
    assert answer["attributes"]["enduser.id"] == player.user_id
    assert {s["name"] for s in trace} >= {"ws.answer", "round_close"}, sorted(s["name"] for s in trace)
    assert failed(trace), trace

    # From the trace to its log lines: the answer handled, then the failure, in the same trace.
    lines = [json.loads(line) for line in new_log_lines(offsets)["web1"] if line.startswith("{")]
    events = [r["event"] for r in lines if r.get("trace_id") == trace_id]
    assert "answer_received" in events and "ws_frame_failed" in events, events
    failure = next(r for r in lines if r.get("trace_id") == trace_id and r["event"] == "ws_frame_failed")
    assert failure["level"] == "error" and failure["room"] == code and failure["round"] == 1

    # From the trace to its Sentry event, and back by the event's trace link.
    event = wait_event(sentry_server, code, "1")
    assert event["tags"]["trace_id"] == trace_id
    assert event["contexts"]["trace"]["trace_id"] == trace_id


async def playing_alone(live: Stack, player: Player, *, answer_seconds: float) -> str:
    """A room of two rounds with `player` alone in it, its first question out; the room's code."""
    code = create_room(
        live.url, player.token, {"rounds": 2, "answer_seconds": answer_seconds, "reveal_seconds": 0}
    )
    await player.connect(code)
    await player.send({"type": "start"})
    await player.next("question")
    return code


async def answer_under_faults(live: Stack, player: Player, *flags: str) -> None:
    """Answer round 1 (closing it) with these fault flags on: the answer is acknowledged, then
    the round close it causes fails (logged, reported; no `error` after the accepted ack)."""
    manage(live, "faults", "set", *flags)
    await asyncio.sleep(0.5)  # every process's copy of the flags is at most 0.2 s old
    await player.send({"type": "answer", "round": 1, "option": 0})
    assert (await player.next("answer_ack"))["accepted"] is True


def wait_event(
    sentry_server: Any,
    room: str,
    round_number: str | None = None,
    *,
    containing: str | None = None,
    timeout: float = 15,
) -> dict[str, Any]:
    """The first Sentry event tagged with this room (and round, if given; and holding the
    text `containing`, if given), its tags as a dict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in sentry_server.snapshot():
            tags = event.get("tags") or {}
            if isinstance(tags, list):
                tags = dict(tags)
            if (
                tags.get("room") == room
                and (round_number is None or tags.get("round") == round_number)
                and (containing is None or containing in json.dumps(event))
            ):
                event["tags"] = tags
                return event
        time.sleep(0.2)
    pytest.fail(
        f"no Sentry event tagged room={room} round={round_number} holding {containing!r}: "
        f"{sentry_server.snapshot()[-3:]}"
    )


async def test_no_span_attribute_or_log_field_carries_a_secret(live, otlp):
    game = await play(live)
    secrets = [PASSWORD, *(p.token for p in game.players)]
    spans = spans_of(otlp, lambda s: s["attributes"].get("nuxtest.room") == game.code)
    for span in spans:
        for key, value in span["attributes"].items():
            assert not SECRET_NAME.search(key), (span["name"], key)
            assert not any(secret in str(value) for secret in secrets), (span["name"], key)
    for source, lines in new_log_lines({}).items():
        for line in lines:
            assert not any(secret in line for secret in secrets), (source, line[:200])
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the JSON test covers the game's lines; older lines may predate it
            for key, value in record.items():
                if SECRET_NAME.search(key):
                    assert value == "[Filtered]", (source, key)
