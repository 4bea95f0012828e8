"""Every Prometheus metric the project exports, declared once (catalogue: docs/telemetry.md).

Labels are bounded sets only: never a user, room, session, token or free text.
In a Celery worker started with PROMETHEUS_MULTIPROC_DIR, prometheus-client keeps the
values in files shared by the prefork children; gauges then say how to combine them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets for frame handling and broadcasts (seconds): sub-ms to a few seconds.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Round-close lag: the SLI is p99 < 250 ms, and 1 s is a failure. A healthy close lands just
# past the deadline's grace (NUXTEST_DEADLINE_GRACE_MS, 50 ms): 50-80 ms under load. With
# nothing between 0.05 and 0.1, histogram_quantile put every such close in one bucket and
# drew p50/p90/p99 as 75/95/99.5 ms whatever the closes were (52/64/78 ms measured): the
# boundaries from 0.05 to 0.1 keep the dashboards' quantiles within a few ms of the truth.
LAG_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.055, 0.06, 0.07, 0.08, 0.09, 0.1, 0.125, 0.15, 0.2, 0.25,
    0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
# Human-scale waits (answer time, matchmaking wait).
HUMAN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)

# Bounded label values.
FRAME_TYPES = ("start", "answer", "ping", "sync", "invalid")
SENT_TYPES = (
    "state",
    "player_joined",
    "player_left",
    "game_started",
    "question",
    "answer_ack",
    "round_result",
    "game_over",
    "pong",
    "error",
)
CONNECT_OUTCOMES = (
    "accepted",
    "error",
    "refused_restarting",
    "refused_unavailable",
    "refused_origin",
    "refused_auth",
    "refused_no_room",
    "refused_full",
    "refused_too_many",
)
ERROR_CODES = (
    "bad_json",
    "unknown_type",
    "invalid_field",
    "not_host",
    "not_in_lobby",
    "rate_limited",
    "message_too_large",
    "internal_error",
)
CHANNEL_FAILURE_KINDS = ("max_connections", "timeout", "connection", "injected", "other")
KNOWN_CLOSE_CODES = {1000, 1001, 1005, 1006, 1011, 1012, 1013, 4401, 4403, 4404, 4409, 4429}


def close_code_label(code: int | None) -> str:
    """A close code as a bounded label value."""
    if code in KNOWN_CLOSE_CODES:
        return str(code)
    return "other"


# --- WebSockets -------------------------------------------------------------------------------
WS_CONNECTIONS = Gauge(
    "nuxtest_ws_connections",
    "Open WebSocket connections.",
    multiprocess_mode="livesum",
)
WS_CONNECTS = Counter("nuxtest_ws_connects_total", "WebSocket handshakes by outcome.", ["outcome"])
WS_DISCONNECTS = Counter("nuxtest_ws_disconnects_total", "WebSocket disconnects by close code.", ["code"])
WS_FRAMES_RECEIVED = Counter(
    "nuxtest_ws_frames_received_total", "Frames received from clients, by type.", ["type"]
)
WS_FRAMES_SENT = Counter("nuxtest_ws_frames_sent_total", "Frames sent to clients, by type.", ["type"])
WS_FRAME_ERRORS = Counter(
    "nuxtest_ws_frame_errors_total", "Error frames sent to clients, by error code.", ["code"]
)
WS_MESSAGE_DURATION = Histogram(
    "nuxtest_ws_message_duration_seconds",
    "Time to handle one client frame, by type; an answer until its answer_ack (trace-id exemplars).",
    ["type"],
    buckets=FAST_BUCKETS,
)

GAME_ACTIONS = Counter(
    "nuxtest_game_actions_total",
    "Game actions (answer, start) handled, by outcome: ok, refused (client error), "
    "server_error. The availability SLI.",
    ["action", "outcome"],
)

# --- Channel layer ----------------------------------------------------------------------------
GROUP_SEND_DURATION = Histogram(
    "nuxtest_channel_layer_group_send_duration_seconds",
    "Time of one channel-layer group_send (trace-id exemplars).",
    buckets=FAST_BUCKETS,
)
CHANNEL_LAYER_FAILURES = Counter(
    "nuxtest_channel_layer_failures_total",
    "Channel-layer operations that raised, by kind.",
    ["kind"],
)
CHANNEL_LAYER_DROPPED = Counter(
    "nuxtest_channel_layer_dropped_messages_total",
    "Group messages channels-redis dropped because a channel was over capacity.",
)
WS_BROADCAST_GAPS = Counter(
    "nuxtest_ws_broadcast_gaps_total",
    "Room broadcasts a connection never sent: it went on past a seq gap after the reorder hold.",
)

# --- Web process -----------------------------------------------------------------------------
EVENT_LOOP_LAG = Histogram(
    "nuxtest_event_loop_lag_seconds",
    "How late the web process's event loop ran a timer (sampled every 100 ms): time the "
    "loop was held by a step, a garbage collection or another thread holding the GIL.",
    buckets=FAST_BUCKETS,
)

# --- Game ------------------------------------------------------------------------------------
# nuxtest_rooms{status} and nuxtest_players_online are read from Redis at scrape time:
# see game.telemetry.collectors (the same value from every web instance: use max()).
GAMES_STARTED = Counter("nuxtest_games_started_total", "Games started.", ["mode"])
GAMES_FINISHED = Counter("nuxtest_games_finished_total", "Games that ended, by outcome.", ["outcome"])
ROUNDS_CLOSED = Counter("nuxtest_rounds_closed_total", "Rounds closed, by trigger.", ["trigger"])
ROUND_CLOSE_LAG = Histogram(
    "nuxtest_round_close_lag_seconds",
    "Actual close time minus deadline for rounds closed by their deadline.",
    buckets=LAG_BUCKETS,
)
ANSWERS = Counter("nuxtest_answers_total", "Answers received, by outcome.", ["outcome"])
ANSWER_TIME = Histogram(
    "nuxtest_answer_time_seconds",
    "Time from a question's broadcast to an accepted answer.",
    buckets=HUMAN_BUCKETS,
)
MATCHMAKING_WAIT = Histogram(
    "nuxtest_matchmaking_wait_seconds",
    "Time from a quick-match placement to the start of the game.",
    buckets=HUMAN_BUCKETS,
)
RESULTS_WRITTEN = Counter("nuxtest_results_written_total", "GameResult rows written.")

# --- Celery ----------------------------------------------------------------------------------
CELERY_TASKS = Counter(
    "nuxtest_celery_tasks_total", "Celery tasks by name and final state.", ["task", "state"]
)
CELERY_TASK_DURATION = Histogram(
    "nuxtest_celery_task_duration_seconds",
    "Celery task run time, by name.",
    ["task"],
    buckets=FAST_BUCKETS,
)
# nuxtest_celery_queue_length{queue} and nuxtest_celery_workers_online are read from
# Redis at scrape time: see game.telemetry.collectors.

# --- Build -----------------------------------------------------------------------------------
BUILD_INFO = Gauge(
    "nuxtest_build_info",
    "Always 1; the labels say which version and commit are running.",
    ["version", "commit"],
    multiprocess_mode="max",
)


def _labels_init() -> None:
    """Create every known label combination at zero, so that series exist before their first
    event: rate() and increase() cannot count a series' first value, and a ratio over a
    missing numerator (the availability SLI before any server error) has no data at all."""
    for outcome in CONNECT_OUTCOMES:
        WS_CONNECTS.labels(outcome=outcome)
    for frame_type in FRAME_TYPES:
        WS_FRAMES_RECEIVED.labels(type=frame_type)
        WS_MESSAGE_DURATION.labels(type=frame_type)
    for sent in SENT_TYPES:
        WS_FRAMES_SENT.labels(type=sent)
    for close in sorted(KNOWN_CLOSE_CODES):
        WS_DISCONNECTS.labels(code=close_code_label(close))
    WS_DISCONNECTS.labels(code="other")
    for code in ERROR_CODES:
        WS_FRAME_ERRORS.labels(code=code)
    for action in ("answer", "start"):
        for outcome in ("ok", "refused", "server_error"):
            GAME_ACTIONS.labels(action=action, outcome=outcome)
    for kind in CHANNEL_FAILURE_KINDS:
        CHANNEL_LAYER_FAILURES.labels(kind=kind)
    for mode in ("private", "quick"):
        GAMES_STARTED.labels(mode=mode)
    for outcome in ("completed", "abandoned"):
        GAMES_FINISHED.labels(outcome=outcome)
    for trigger in ("all_answered", "deadline"):
        ROUNDS_CLOSED.labels(trigger=trigger)
    for outcome in ("correct", "wrong", "missing"):
        ANSWERS.labels(outcome=outcome)


_labels_init()
