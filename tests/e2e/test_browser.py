"""A real browser against the real stack: two players play NuxTest in headless Chromium.

Playwright drives Debian's Chromium (`/usr/bin/chromium`, or `PLAYWRIGHT_CHROMIUM_EXECUTABLE`)
against the `stack` fixture: two Daphne processes, a Celery worker and beat, Redis and the
test database. Everything goes through the pages as a player would: sign-up form, lobby
forms, option buttons. Where Playwright or Chromium is missing the tests are skipped,
unless `NUXTEST_REQUIRE_BROWSER=1` (CI), where that is a failure. Any uncaught JavaScript
exception or console error in a page fails the test.

Screenshots land in tests/artifacts/browser/ (the final standings, and each page as the
test left it, for debugging a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connections

from game.models import GameResult, Question
from tests.e2e.stack import ROOT, Stack

try:
    from playwright.async_api import Browser, Page, ViewportSize, WebSocketRoute, async_playwright, expect
except ImportError as exc:  # the dev extra is not installed
    PLAYWRIGHT_MISSING: str | None = str(exc)
else:
    PLAYWRIGHT_MISSING = None

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
PASSWORD = "browser-Quiz-password-42"
LETTERS = "ABCD"
WAIT_MS = 10_000
PHONE: ViewportSize = {"width": 375, "height": 667}

# Runs in every page before its own scripts. It can skew the page's clock (Date.now, the only
# clock room.js reads) to play a player whose computer clock is wrong, and it keeps a snapshot
# of each round result as the page rendered it: with reveal_seconds 0 the next question
# replaces the result at once, too fast to look at from outside the page.
INIT_SCRIPT = """
(() => {
  const skew = %(skew)d;
  if (skew) {
    const realNow = Date.now.bind(Date);
    Date.now = () => realNow() + skew;
  }
  const log = { results: {} };
  window.__nuxtest = log;
  document.addEventListener('DOMContentLoaded', () => {
    const box = document.getElementById('round-result');
    if (!box) return;
    new MutationObserver(() => {
      const title = box.querySelector('h3');
      if (box.hidden || !title || log.results[title.textContent]) return;
      log.results[title.textContent] = {
        at: performance.timeOrigin + performance.now(),
        answer: box.querySelector('.correct-answer').textContent,
        status: document.getElementById('answer-status').textContent,
        width: document.documentElement.scrollWidth,
        rows: Array.from(box.querySelectorAll('tbody tr'),
          (tr) => Array.from(tr.cells, (td) => td.textContent)),
        options: Array.from(document.querySelectorAll('#options button.option'),
          (b) => ({ disabled: b.disabled, classes: b.className })),
      };
    }).observe(box, { childList: true, subtree: true, attributes: true });
  });
})();
"""

# What the page shows and the real time (performance.* is not skewed), read in one go.
READ_COUNTDOWN = """() => ({
  shown: Number(document.getElementById('countdown').textContent),
  now: performance.timeOrigin + performance.now(),
  skew: Date.now() - (performance.timeOrigin + performance.now()),
})"""


@dataclass
class Player:
    """One browser context (its own cookies) with one page, and what the page went through."""

    label: str
    name: str
    page: Page
    frames: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        state = next(f for f in self.frames if f["type"] == "state")
        return next(int(p["id"]) for p in state["players"] if p["name"] == self.name)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The WebSocket frames of one type this page received, in order, over every reload."""
        return [f for f in self.frames if f["type"] == kind]

    def question(self, n: int) -> dict[str, Any]:
        """Round n's question as the page last received it (a `question`, or a `state`'s)."""
        for frame in reversed(self.frames):
            if frame["type"] == "question" and frame["round"] == n:
                return frame
            if frame["type"] == "state" and frame.get("round") == n and frame.get("question"):
                return dict(frame["question"], round=n)
        raise AssertionError(f"{self.label} got no question for round {n}")

    def round_result(self, n: int) -> dict[str, Any]:
        return next(f for f in self.of_type("round_result") if f["round"] == n)

    async def rendered_result(self, n: int) -> dict[str, Any]:
        """The round-result panel as it was first rendered for round n."""
        handle = await self.page.wait_for_function(
            "(title) => window.__nuxtest.results[title]", arg=f"Round {n} result", timeout=WAIT_MS
        )
        value: dict[str, Any] = await handle.json_value()
        return value


def browser_unavailable(problem: str) -> None:
    if os.environ.get("NUXTEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{problem}, and NUXTEST_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(problem)


@pytest.fixture(scope="session", autouse=True)
def chromium() -> str:
    """The Chromium executable; checked before the stack starts, so a skip costs nothing."""
    if PLAYWRIGHT_MISSING is not None:
        browser_unavailable(f"Playwright is not installed ({PLAYWRIGHT_MISSING}): pip install -e '.[dev]'")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        browser_unavailable(
            f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PLAYWRIGHT_CHROMIUM_EXECUTABLE)"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def players(
    browser: Browser, live: Stack, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[Player]]]:
    """Make players, each in a fresh browser context: make("alice", skew_ms=...)."""
    expect.set_options(timeout=WAIT_MS)
    made: list[Player] = []

    async def make(
        label: str, skew_ms: int = 0, *, viewport: ViewportSize | None = None, long_name: bool = False
    ) -> Player:
        context = await browser.new_context(
            base_url=live.url,
            locale="en-US",
            timezone_id="UTC",
            viewport=viewport or {"width": 1100, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        await context.add_init_script(INIT_SCRIPT % {"skew": skew_ms})
        page = await context.new_page()
        # A long name has no break in its last 100 characters (usernames go up to 150).
        name = f"{label}-{uuid.uuid4().hex[:6]}" + ("W" * 94 if long_name else "")
        player = Player(label=label, name=name, page=page)
        watch(player, page)
        made.append(player)
        return player

    yield make
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for player in made:
        # How each page was left: the first thing to look at when a test fails.
        with contextlib.suppress(Exception):
            await player.page.screenshot(
                path=ARTIFACTS / f"{request.node.name}-{player.label}.png", full_page=True
            )
        await player.page.context.close()
    # The async ORM calls ran on asgiref's worker thread: close its connection, or the test
    # database cannot be dropped at the end of the session ("accessed by other users").
    await sync_to_async(connections.close_all)()


def watch(player: Player, page: Page) -> None:
    """Record the page's JavaScript errors and received WebSocket frames in the player's lists."""

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            player.errors.append(f"console error at {msg.location}: {msg.text}")

    def on_websocket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: player.frames.append(json.loads(payload)))

    page.on("console", on_console)
    page.on("pageerror", lambda err: player.errors.append(f"uncaught exception: {err}"))
    page.on("websocket", on_websocket)


async def page_width(page: Page) -> int:
    """How wide the page is laid out: more than the viewport means it scrolls sideways."""
    width: int = await page.evaluate("() => document.documentElement.scrollWidth")
    return width


def assert_no_js_errors(*players: Player) -> None:
    errors = {p.label: p.errors for p in players if p.errors}
    assert not errors, f"JavaScript errors in the pages: {errors}"


async def sign_up(player: Player, base: str) -> None:
    """Create the player's account through the sign-up page; it lands on the lobby, logged in."""
    page = player.page
    await page.goto("/accounts/signup/")
    await page.fill("#id_username", player.name)
    await page.fill("#id_password1", PASSWORD)
    await page.fill("#id_password2", PASSWORD)
    await page.click("form.stacked-form button[type=submit]")
    await expect(page).to_have_url(f"{base}/")
    await expect(page.locator("#current-user")).to_have_text(player.name)
    await expect(page.locator("#create-form")).to_be_visible()


async def create_room(host: Player, **settings: float) -> str:
    """Fill the lobby's create form; return the code of the room the host lands in."""
    page = host.page
    for name, value in settings.items():
        await page.fill(f"#id_{name}", str(value))
    await page.click("#create-button")
    await page.wait_for_url(re.compile(r"/rooms/[A-Z2-9]{6}/$"))
    code = await page.locator("#room-code-label").inner_text()
    assert page.url.endswith(f"/rooms/{code}/")
    await expect(page.locator("#status")).to_have_text("lobby")
    return code


async def join_room(player: Player, code: str) -> None:
    """Type the code into the lobby's join form, as a player would (in lower case)."""
    page = player.page
    await page.fill("#id_code", code.lower())
    await page.click("#join-button")
    await page.wait_for_url(f"**/rooms/{code}/")
    await expect(page.locator("#status")).to_have_text("lobby")


async def wait_question(player: Player, n: int, rounds: int, *, answered: bool = False) -> dict[str, Any]:
    """Wait until the page shows round n's question, open; return it as the page received it."""
    page = player.page
    await expect(page.locator("#status")).to_have_text("playing")
    await expect(page.locator("#round-label")).to_have_text(f"Round {n} / {rounds}")
    buttons = page.locator("#options button.option")
    for i in range(4):
        if answered:
            await expect(buttons.nth(i)).to_be_disabled()
        else:
            await expect(buttons.nth(i)).to_be_enabled()
    question = player.question(n)
    await expect(page.locator("#question-text")).to_have_text(question["text"])
    await expect(buttons).to_have_text(question["options"])
    assert "correct_option" not in question and "correct" not in question
    return question


async def correct_index(question: dict[str, Any]) -> int:
    """Where the right answer is among this question's (shuffled) options."""
    stored = await Question.objects.aget(text=question["text"])
    return int(question["options"].index(stored.options[stored.correct]))


def named(question: dict[str, Any], option: int) -> str:
    """An option as the answer's status says it: its letter and its text."""
    return f"{LETTERS[option]}, “{question['options'][option]}”"


async def click_option(player: Player, option: int, *, closes_round: bool = False) -> None:
    """Click an answer; unless it is the last answer the round waits for, it shows as locked in."""
    button = player.page.locator(f'#options button.option[data-option="{option}"]')
    await button.click()
    if not closes_round:
        await expect(player.page.locator("#answer-status")).to_have_text(
            "Answer locked in: waiting for the others…"
        )
        await expect(button).to_have_class(re.compile(r"\bchosen\b"))


async def assert_countdown_follows_deadline(player: Player, deadline: int, answer_seconds: float) -> None:
    """The countdown shown is the time left to the server's deadline, whatever the page's clock."""
    last = None
    for _ in range(3):
        seen = await player.page.evaluate(READ_COUNTDOWN)
        expected = (deadline - seen["now"]) / 1000
        assert 0 < expected <= answer_seconds, (expected, seen)
        # One 100 ms tick of the display, its rounding to 0.1 s, the clock estimate and a
        # renderer that may stall a moment on a busy machine (the clocks are 45 s off).
        assert abs(seen["shown"] - expected) <= 0.6, (
            f"{player.label} shows {seen['shown']} s left, the deadline is {expected:.2f} s away",
            seen,
        )
        if last is not None:
            assert seen["shown"] < last, "the countdown runs down"
        last = seen["shown"]
        await player.page.wait_for_timeout(400)


async def test_two_players_sign_up_create_join_and_play_a_full_game_in_the_browser(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    # Rounds 1 and 3 must close on answers, each a few page interactions away: 6 s leaves a
    # busy CI machine room (round 2 waits its deadline out).
    rounds, answer_seconds = 3, 6
    alice, bob = await players("alice"), await players("bob")
    for p in (alice, bob):
        await sign_up(p, live.url)

    code = await create_room(
        alice, rounds=rounds, answer_seconds=answer_seconds, reveal_seconds=0, max_players=2
    )
    await expect(alice.page.locator("#settings-summary")).to_contain_text(
        "3 rounds · 6 s to answer · 0 s pause · up to 2 players"
    )
    await join_room(bob, code)

    for p in (alice, bob):
        await expect(p.page.locator("#players li.player .player-name")).to_have_text([alice.name, bob.name])
        await expect(p.page.locator('#players li.player[data-connected="true"]')).to_have_count(2)
        await expect(p.page.locator("#players li.player.host .player-name")).to_have_text(alice.name)
        await expect(p.page.locator("#players li.player.me .player-name")).to_have_text(p.name)
        await expect(p.page.locator("#connection")).to_have_attribute("data-state", "connected")
    await expect(bob.page.locator("#start-button")).to_be_hidden()
    await expect(bob.page.locator("#lobby-hint")).to_contain_text(f"Waiting for {alice.name} to start")
    await expect(alice.page.locator("#start-button")).to_be_visible()
    await alice.page.click("#start-button")

    # Round 1: both answer (Alice right, Bob wrong), so it closes at once.
    q = await wait_question(alice, 1, rounds)
    assert await wait_question(bob, 1, rounds) == q
    right = await correct_index(q)
    wrong = (right + 1) % 4
    await click_option(alice, right)
    await click_option(bob, wrong, closes_round=True)
    a1, b1 = await alice.rendered_result(1), await bob.rendered_result(1)
    assert a1["at"] < q["deadline"], "the round closed when both had answered, not at the deadline"
    assert a1["answer"] == b1["answer"] == f"Correct answer: {LETTERS[right]}. {q['options'][right]}"
    points = alice.round_result(1)["results"][0]["points"]
    assert 500 < points <= 1000
    assert a1["status"] == f"Correct! +{points} points."
    assert b1["status"] == f"Wrong: the answer was {named(q, right)}."
    assert (
        a1["rows"]
        == b1["rows"]
        == [
            [alice.name, LETTERS[right], f"+{points}", str(points)],
            [bob.name, LETTERS[wrong], "0", "0"],
        ]
    )

    # Round 2: only Alice answers; the round closes at its deadline.
    q = await wait_question(alice, 2, rounds)
    await wait_question(bob, 2, rounds)
    right = await correct_index(q)
    await click_option(alice, right)
    a2, b2 = await alice.rendered_result(2), await bob.rendered_result(2)
    assert a2["at"] >= q["deadline"] - 20 and b2["at"] >= q["deadline"] - 20, "closed by the deadline"
    assert a2["status"].startswith("Correct! +")
    assert b2["status"] == f"No answer this round: the answer was {named(q, right)}."
    assert all(o["disabled"] for o in b2["options"]), "no answering once the round is over"
    assert b2["rows"][1][:3] == [bob.name, "—", "0"]

    # Round 3: Alice wrong, Bob right; the last result is followed by the final standings.
    q = await wait_question(alice, 3, rounds)
    await wait_question(bob, 3, rounds)
    right = await correct_index(q)
    await click_option(bob, right)
    await click_option(alice, (right + 2) % 4, closes_round=True)
    a3 = await alice.rendered_result(3)
    assert a3["status"] == f"Wrong: the answer was {named(q, right)}."

    totals = {e["player"]: e["total"] for e in alice.round_result(3)["results"]}
    for p in (alice, bob):
        page = p.page
        await expect(page.locator("#status")).to_have_text("finished")
        await expect(page.locator("#final-panel")).to_be_visible()
        standings = page.locator("#standings tr.standing")
        await expect(standings.locator("td.rank")).to_have_text(["1", "2"])
        await expect(standings.locator("td.name")).to_have_text([alice.name, bob.name])
        await expect(standings.locator("td.score")).to_have_text(
            [str(totals[alice.user_id]), str(totals[bob.user_id])]
        )
        await expect(standings.locator("td.correct")).to_have_text(["2", "1"])
        await expect(page.locator("#standings tr.standing.me td.name")).to_have_text(p.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await alice.page.screenshot(path=ARTIFACTS / "final-standings.png", full_page=True)

    stored = [r async for r in GameResult.objects.filter(room=code)]
    assert {r.user_id: (r.score, r.rank, r.correct, r.rounds) for r in stored} == {
        alice.user_id: (totals[alice.user_id], 1, 2, 3),
        bob.user_id: (totals[bob.user_id], 2, 1, 3),
    }

    # History: each player's own result; leaderboard: both players.
    for p, rank, correct in ((alice, "1", "2 / 3"), (bob, "2", "1 / 3")):
        await p.page.click(".site-nav >> text=History")
        await expect(p.page).to_have_url(f"{live.url}/history/")
        row = p.page.locator("#history tbody tr.result")
        await expect(row).to_have_count(1)
        await expect(row.locator("td.room")).to_have_text(code)
        await expect(row.locator("td.rank")).to_have_text(rank)
        await expect(row.locator("td.score")).to_have_text(f"{totals[p.user_id]:,}")
        await expect(row.locator("td.correct")).to_have_text(correct)
        await expect(p.page.locator("#history-summary")).to_contain_text("1 game")

    await alice.page.click(".site-nav >> text=Leaderboard")
    await expect(alice.page).to_have_url(f"{live.url}/leaderboard/")
    await expect(alice.page.locator("#leaderboard")).to_have_attribute("aria-busy", "false")
    leaders = alice.page.locator("#leaderboard tbody tr.leader")
    await expect(leaders.locator("td.name")).to_have_text([alice.name, bob.name])
    await expect(leaders.locator("td.score")).to_have_text(
        [f"{totals[alice.user_id]:,}", f"{totals[bob.user_id]:,}"]
    )
    await expect(leaders.locator("td.games")).to_have_text(["1", "1"])
    await expect(alice.page.locator("#leaderboard tbody tr.leader.me td.name")).to_have_text(alice.name)

    # The period tabs are WAI-ARIA tabs: the chosen one in the Tab order, arrows between them.
    page = alice.page
    tab_order = "() => Array.from(document.querySelectorAll('[role=tab]')).map((t) => t.tabIndex)"
    assert await page.evaluate(tab_order) == [-1, 0, -1]
    await page.locator("#period-week").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#period-all")).to_be_focused()
    await expect(page.locator("#period-all")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#leaderboard")).to_have_attribute("data-period", "all")
    await expect(page.locator("#leaderboard-panel")).to_have_attribute("aria-labelledby", "period-all")
    await expect(page).to_have_url(re.compile(r"period=all$"))
    await page.keyboard.press("ArrowRight")  # from the last, round to the first
    await expect(page.locator("#period-day")).to_be_focused()
    await expect(page.locator("#leaderboard")).to_have_attribute("data-period", "day")
    await expect(leaders.locator("td.name")).to_have_text([alice.name, bob.name])
    await page.keyboard.press("End")
    await expect(page.locator("#period-all")).to_have_attribute("aria-selected", "true")
    await page.keyboard.press("Home")
    await expect(page.locator("#period-day")).to_have_attribute("aria-selected", "true")
    assert await page.evaluate(tab_order) == [0, -1, -1]

    assert_no_js_errors(alice, bob)


async def test_the_countdown_follows_the_server_clock_and_a_reload_restores_the_question_or_the_result(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    # Round 1 holds five countdown checks and two reloads; its pause, one reload more.
    rounds, answer_seconds, reveal_seconds = 2, 25, 8
    # Two players whose computer clocks are wrong, one ahead and one behind: left to their own
    # clocks, one would see the time already up and the other a minute and more to go.
    ahead, behind = await players("ahead", skew_ms=45_000), await players("behind", skew_ms=-45_000)
    for p in (ahead, behind):
        await sign_up(p, live.url)
    code = await create_room(
        ahead, rounds=rounds, answer_seconds=answer_seconds, reveal_seconds=reveal_seconds
    )
    await join_room(behind, code)
    await expect(ahead.page.locator('#players li.player[data-connected="true"]')).to_have_count(2)
    await ahead.page.click("#start-button")

    q = await wait_question(ahead, 1, rounds)
    await wait_question(behind, 1, rounds)
    deadline = q["deadline"]
    for p, skew in ((ahead, 45_000), (behind, -45_000)):
        assert abs((await p.page.evaluate(READ_COUNTDOWN))["skew"] - skew) < 1000, "the clock is skewed"
        await assert_countdown_follows_deadline(p, deadline, answer_seconds)

    # A reload mid-round reconnects: the same question, deadline and countdown come back.
    # (The player who has not answered goes first: while the other is away, a round that every
    # connected player has answered would close.)
    await ahead.page.reload()
    restored = await wait_question(ahead, 1, rounds)
    assert ahead.of_type("state")[-1]["question"]["answered"] is False
    assert (restored["text"], restored["options"], restored["deadline"]) == (
        q["text"],
        q["options"],
        deadline,
    )
    await assert_countdown_follows_deadline(ahead, deadline, answer_seconds)
    await expect(behind.page.locator('#players li.player[data-connected="true"]')).to_have_count(2)

    await click_option(behind, 0)
    await behind.page.reload()
    restored = await wait_question(behind, 1, rounds, answered=True)
    assert behind.of_type("state")[-1]["question"]["answered"] is True
    assert (restored["text"], restored["options"], restored["deadline"]) == (
        q["text"],
        q["options"],
        deadline,
    )
    await expect(behind.page.locator("#answer-status")).to_have_text(
        "Answer locked in: waiting for the others…"
    )
    await assert_countdown_follows_deadline(behind, deadline, answer_seconds)
    await expect(ahead.page.locator('#players li.player[data-connected="true"]')).to_have_count(2)

    # Play on: the answer from the reloaded page closes round 1 long before the deadline.
    right = await correct_index(q)
    await click_option(ahead, right, closes_round=True)
    before = await ahead.rendered_result(1)
    assert before["at"] < deadline, "round 1 closed when both had answered"
    assert before["status"].startswith("Correct! +")
    assert (await behind.rendered_result(1))["rows"][1][1] == "A"
    # Reloaded in the pause, the page shows the round's result again (from the `state`).
    await ahead.page.reload()
    after = await ahead.rendered_result(1)
    assert after["answer"] == before["answer"] == f"Correct answer: {LETTERS[right]}. {q['options'][right]}"
    assert after["rows"] == before["rows"]
    q2 = await wait_question(ahead, 2, rounds)
    await wait_question(behind, 2, rounds)
    await assert_countdown_follows_deadline(behind, q2["deadline"], answer_seconds)
    await click_option(behind, await correct_index(q2))
    await click_option(ahead, 3, closes_round=True)
    for p in (ahead, behind):
        await expect(p.page.locator("#status")).to_have_text("finished")
        names = p.page.locator("#standings tr.standing td.name")
        await expect(names).to_have_count(2)
        assert sorted(await names.all_text_contents()) == sorted([ahead.name, behind.name])
    assert await GameResult.objects.filter(room=code).acount() == 2
    # Each saw the other leave and come back.
    for p, other in ((ahead, behind), (behind, ahead)):
        moves = [
            f["type"]
            for f in p.frames
            if f["type"] in {"player_left", "player_joined"} and f["player"]["id"] == other.user_id
        ]
        assert moves[-2:] == ["player_left", "player_joined"], (p.label, moves)

    assert_no_js_errors(ahead, behind)


async def test_a_quick_match_counts_down_to_its_start_and_plays(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    alice, bob = await players("alice"), await players("bob")
    codes = []
    for p in (alice, bob):
        await sign_up(p, live.url)
        await p.page.click("#quick-match-button")
        await p.page.wait_for_url(re.compile(r"/rooms/[A-Z2-9]{6}/\?quick=1$"))
        codes.append(await p.page.locator("#room-code-label").inner_text())
    assert codes[0] == codes[1], "two players asking together share a room"
    for p in (alice, bob):
        # Nobody hosts a quick-match room: no Start button, and the lobby counts down.
        await expect(p.page.locator("#start-button")).to_be_hidden()
        await expect(p.page.locator("#lobby-hint")).to_contain_text(re.compile(r"starting in [0-5] s"))

    rounds = 5  # the quick-match defaults: 10 s to answer, a 3 s pause
    q = await wait_question(alice, 1, rounds)
    await wait_question(bob, 1, rounds)
    right = await correct_index(q)
    await click_option(alice, right)
    await click_option(bob, (right + 1) % 4, closes_round=True)
    result = await alice.rendered_result(1)
    assert result["answer"] == f"Correct answer: {LETTERS[right]}. {q['options'][right]}"
    assert (await bob.rendered_result(1))["rows"] == result["rows"]
    await wait_question(alice, 2, rounds)
    assert_no_js_errors(alice, bob)


async def test_a_quick_match_player_whose_room_started_before_their_page_connected_is_placed_again(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    alice, bob, carol = await players("alice"), await players("bob"), await players("carol")
    for p in (alice, bob, carol):
        await sign_up(p, live.url)
    for p in (alice, bob):
        await p.page.click("#quick-match-button")
        await p.page.wait_for_url(re.compile(r"/rooms/[A-Z2-9]{6}/\?quick=1$"))
    first = await alice.page.locator("#room-code-label").inner_text()
    # Carol is placed in the same room, but her page opens it only once it has started.
    placed = await carol.page.evaluate("() => window.NuxTest.postJSON('/api/matchmaking/', {})")
    assert placed["code"] == first
    await wait_question(alice, 1, 5)
    await carol.page.goto(f"/rooms/{first}/?quick=1")
    # Refused (4409), the page asks quick match again and lands in a room of its own.
    await carol.page.wait_for_url(re.compile(rf"/rooms/(?!{first})[A-Z2-9]{{6}}/\?quick=1$"))
    await expect(carol.page.locator("#status")).to_have_text("lobby")
    assert_no_js_errors(alice, bob, carol)


async def test_on_a_phone_a_long_name_fits_the_screen_and_each_question_comes_with_its_countdown(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    rounds = 2
    phone = await players("phone", viewport=PHONE, long_name=True)
    page = phone.page
    await sign_up(phone, live.url)
    assert await page_width(page) <= PHONE["width"], "the lobby fits the screen"

    # A well-formed code of no room is refused by the join form, not by a 404 page.
    assert await page.evaluate("() => fetch('/api/rooms/ZZZZZZ/').then((r) => r.status)") == 404
    await page.fill("#id_code", "zzzzzz")
    await page.click("#join-button")
    await expect(page.locator("#join-error")).to_contain_text("No room has the code “ZZZZZZ”")
    await expect(page).to_have_url(f"{live.url}/")
    # Chromium logs every 404 response as a console error: these two were asked for.
    phone.errors[:] = [e for e in phone.errors if "/api/rooms/ZZZZZZ/" not in e]

    # The room's settings line names its category as the lobby's form does, not by its slug.
    category = page.locator("#id_category option").nth(1)
    slug, category_name = await category.get_attribute("value"), await category.inner_text()
    assert slug and category_name != slug
    await page.select_option("#id_category", slug)
    code = await create_room(phone, rounds=rounds, answer_seconds=10, reveal_seconds=1, max_players=1)
    await expect(page.locator("#settings-summary")).to_contain_text(f"category: {category_name}")
    await expect(page.locator("#invite-link")).to_be_visible()
    await expect(page.locator("#start-button")).to_be_in_viewport(ratio=1)
    assert await page_width(page) <= PHONE["width"], "the room's lobby fits the screen"
    await page.click("#start-button")

    bar = page.locator("#game-panel .round-bar")
    for n in range(1, rounds + 1):
        q = await wait_question(phone, n, rounds)
        # The question is brought into view with its countdown, not scrolled past it.
        await expect(bar).to_be_in_viewport(ratio=1)
        await expect(page.locator("#question-text")).to_be_in_viewport()
        right = await correct_index(q)
        if n == 1:
            await expect(page.locator("#invite-link")).to_be_hidden()
            await expect(page.locator("#keys-hint")).to_contain_text("Keyboard shortcuts: press 1")
            assert await page_width(page) <= PHONE["width"], "the question fits the screen"
            await page.click(f'#options button.option[data-option="{right}"]')
            result = await phone.rendered_result(1)
            assert result["width"] <= PHONE["width"], f"the round result is {result['width']} px wide"
        else:
            # The clicked option went disabled with its answer: the next question focuses option A,
            # and the keys answer.
            await expect(page.locator('#options button.option[data-option="0"]')).to_be_focused()
            await page.keyboard.press(str(right + 1))

    await expect(page.locator("#status")).to_have_text("finished")
    await expect(page.locator("#standings tr.standing td.correct")).to_have_text(["2"])
    assert await page_width(page) <= PHONE["width"], "the final standings fit the screen"
    stored = await GameResult.objects.aget(room=code)
    assert (stored.rank, stored.correct) == (1, 2)

    # Opened again after game_over (a new tab: no game_over frame, nothing kept in the tab),
    # the page shows the stored standings, correct answers included.
    again = await page.context.new_page()
    watch(phone, again)
    await again.goto(f"/rooms/{code}/")
    await expect(again.locator("#status")).to_have_text("finished")
    rows = again.locator("#standings tr.standing")
    await expect(rows.locator("td.correct")).to_have_text([str(stored.correct)])
    await expect(rows.locator("td.rank")).to_have_text([str(stored.rank)])
    await expect(rows.locator("td.score")).to_have_text([str(stored.score)])
    await expect(again.locator("#invite-link")).to_be_hidden()
    assert await page_width(again) <= PHONE["width"], "the reopened standings fit the screen"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await again.screenshot(path=ARTIFACTS / "phone-final-standings-reopened.png", full_page=True)
    assert_no_js_errors(phone)


async def test_an_answer_that_reaches_the_server_after_the_round_closed_shows_as_too_late(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    rounds, answer_seconds = 2, 4
    late = await players("late")
    page = late.page
    await sign_up(late, live.url)
    # Logged in, the log-in and sign-up pages say so.
    for path in ("/accounts/login/", "/accounts/signup/"):
        await page.goto(path)
        await expect(page.locator("#logged-in-note")).to_contain_text(f"You are logged in as {late.name}")
    await page.click("#logged-in-note a")
    await expect(page).to_have_url(f"{live.url}/")

    # The page's answers are held back on their way to the server, until released.
    held: list[str] = []
    answer_held = asyncio.Event()
    servers: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        servers.append(server)

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "answer":
                held.append(message)
                answer_held.set()
            else:
                server.send(message)

        ws.on_message(to_server)

    await page.route_web_socket(re.compile(r"/ws/rooms/"), route)
    await create_room(late, rounds=rounds, answer_seconds=answer_seconds, reveal_seconds=10, max_players=1)
    await page.click("#start-button")
    q = await wait_question(late, 1, rounds)
    right = await correct_index(q)
    mine = (right + 1) % 4
    pick = page.locator(f'#options button.option[data-option="{mine}"]')
    await pick.click()
    await asyncio.wait_for(answer_held.wait(), WAIT_MS / 1000)

    # The round closes at its deadline without the answer: the page says it came too late,
    # shows the right answer, and keeps the pick marked as the player's.
    status = page.locator("#answer-status")
    too_late = (
        f"Too late: your answer ({LETTERS[mine]}) arrived after the round closed and did not count. "
        f"The answer was {named(q, right)}."
    )
    await expect(status).to_have_text(too_late)
    await expect(page.locator("#round-result")).to_be_visible()
    await expect(pick).to_have_class(re.compile(r"\bchosen\b.*\blate\b"))
    await expect(pick).to_have_attribute("aria-pressed", "true")
    await expect(page.locator(f'#options button.option[data-option="{right}"]')).to_have_class(
        re.compile(r"\bcorrect\b")
    )

    # Released in the pause, the answer is refused as round_closed: still shown as too late.
    servers[-1].send(held.pop())
    await expect(pick).not_to_have_class(re.compile(r"\bpending\b"))
    await expect(pick).to_have_class(re.compile(r"\bchosen\b.*\blate\b"))
    await expect(pick).not_to_have_class(re.compile(r"\bwrong\b"))
    await expect(status).to_have_text(too_late)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "late-answer.png", full_page=True)
    assert late.of_type("answer_ack")[-1] == {
        "type": "answer_ack",
        "round": 1,
        "accepted": False,
        "reason": "round_closed",
    }

    await page.goto("/leaderboard/")
    await expect(page.locator("#leaderboard-note")).to_contain_text("updated every 30 s or so")
    assert_no_js_errors(late)


# Contrast (WCAG 2.x) of a colour against the background an element sits on: the first opaque
# background up its ancestors (translucent ones blended in). `what` is "color" (its text) or
# "outlineColor" (its focus ring).
CONTRAST = """([selector, what]) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const alpha = (c) => (c.length > 3 ? c[3] : 1);
  const blend = (c, under) => [0, 1, 2].map((i) => c[i] * alpha(c) + under[i] * (1 - alpha(c)));
  const lum = (c) => c
    .map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const node = selector ? document.querySelector(selector) : document.activeElement;
  const layers = [];
  for (let e = what === 'color' ? node : node.parentElement; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) layers.push(c);
    if (c.length < 4 || c[3] >= 1) break;
  }
  const bg = layers.reverse().reduce((under, c) => blend(c, under), [255, 255, 255]);
  const [a, b] = [lum(blend(rgb(getComputedStyle(node)[what]), bg)), lum(bg)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""

# Every text the page's #announcer live region said, in order.
RECORD_ANNOUNCEMENTS = """() => {
  const box = document.getElementById('announcer');
  window.__said = [];
  new MutationObserver(() => { if (box.textContent) window.__said.push(box.textContent); })
    .observe(box, { childList: true, characterData: true, subtree: true });
}"""


async def assert_focus_ring_visible(page: Page, where: str) -> None:
    """The focused element shows a focus ring of 3:1 or more against its background."""
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), f"no focus ring on {where}"
    ratio = await page.evaluate(CONTRAST, [None, "outlineColor"])
    assert ratio >= 3, f"the focus ring on {where} is {ratio:.2f}:1 against its background"


async def test_a_keyboard_and_screen_reader_player_is_told_each_question_and_kept_at_the_answers(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    rounds = 2
    solo = await players("keys")
    page = solo.page
    await sign_up(solo, live.url)
    await create_room(solo, rounds=rounds, answer_seconds=10, reveal_seconds=0, max_players=1)
    await expect(page.locator("#announcer")).to_be_attached()
    await page.evaluate(RECORD_ANNOUNCEMENTS)
    # The countdown is labelled in its text, not by an aria-label on a plain span.
    await expect(page.locator("#game-panel .timer")).to_contain_text("Time left")
    await page.locator("#start-button").focus()
    await page.keyboard.press("Enter")

    option_a = page.locator('#options button.option[data-option="0"]')
    for n in range(1, rounds + 1):
        q = await wait_question(solo, n, rounds)
        # The Start button went away (round 1), the answered option went disabled (round 2):
        # either way the keyboard is back on the answers, with a ring that shows.
        await expect(option_a).to_be_focused()
        await assert_focus_ring_visible(page, f"option A of round {n}")
        right = await correct_index(q)
        if n == 1:
            # The one announcement of the countdown, halfway through a 10 s round.
            await page.wait_for_function(
                "() => window.__said.some((s) => /^[1-5] seconds left[.]$/.test(s))", timeout=WAIT_MS
            )
            for _ in range(right):
                await page.keyboard.press("Tab")
            await page.keyboard.press("Space")
        else:
            await page.keyboard.press(str(right + 1))

    # Game over: the standings take the focus (and Tab goes on to their links), and it is said.
    await expect(page.locator("#status")).to_have_text("finished")
    await expect(page.locator("#final-title")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.locator("#back-to-lobby")).to_be_focused()
    await assert_focus_ring_visible(page, "Back to the lobby")
    score = await page.locator("#standings td.score").inner_text()
    said: list[str] = await page.evaluate("() => window.__said")
    texts = [solo.question(n)["text"] for n in range(1, rounds + 1)]
    expected = [
        rf"Round 1 of 2: {re.escape(texts[0])} \d+ seconds to answer\.",
        r"[1-5] seconds left\.",  # 5, unless a busy machine held the tick
        rf"Round 2 of 2: {re.escape(texts[1])} \d+ seconds to answer\.",
        rf"Game over\. You are ranked 1 of 1 with {score} points\.",
    ]
    assert len(said) == len(expected) and all(map(re.fullmatch, expected, said)), said

    # The leaderboard's top ranks are readable: 4.5:1 at least, like all body text.
    await page.goto("/leaderboard/?period=day")
    await expect(page.locator("#leaderboard tbody tr.top-1 td.rank")).to_have_text("1")
    ratio = await page.evaluate(CONTRAST, ["#leaderboard tr.top-1 td.rank", "color"])
    assert ratio >= 4.5, f"the leaderboard's first rank has a contrast of {ratio:.2f}:1"
    assert_no_js_errors(solo)


async def test_the_answer_keys_can_be_turned_off_and_stay_off_in_that_browser(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    # WCAG 2.1.4: single-key shortcuts can be turned off. Speech input types words, and a
    # player saying "bad" answered B. Alone in the room, any answer sent closes the round.
    solo = await players("shortcuts")
    page = solo.page
    await sign_up(solo, live.url)
    await create_room(solo, rounds=1, answer_seconds=30, reveal_seconds=0, max_players=1)
    await page.click("#start-button")
    q = await wait_question(solo, 1, 1)
    right = await correct_index(q)
    wrong = (right + 1) % 4
    toggle = page.locator("#keys-toggle")
    await expect(toggle).to_be_checked()
    await toggle.uncheck()
    await page.locator("#question-text").click()  # the keys go to the page, not the box
    await page.keyboard.type(f"bad{wrong + 1}")

    # Nothing was sent (the round is still open after a reload), and the choice is kept.
    await page.reload()
    await wait_question(solo, 1, 1)
    await expect(toggle).not_to_be_checked()
    await page.keyboard.press(str(wrong + 1))
    await toggle.check()
    await page.locator("#question-text").click()
    await page.keyboard.press(str(right + 1))
    result = await solo.rendered_result(1)
    assert result["status"].startswith("Correct! +"), result
    assert await page.evaluate("() => localStorage.getItem('nuxtest.shortcuts')") == "on"
    assert_no_js_errors(solo)


async def test_a_room_the_server_lost_mid_game_is_said_gone_not_shown_as_playing(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    # Under `make run` the embedded Redis keeps nothing: after a restart an open game page
    # reconnected to "No such room: check the code or the invite link", under a question
    # still shown as playing and players still online (a README walk).
    solo = await players("lost")
    page = solo.page
    await sign_up(solo, live.url)
    sockets: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    await page.route_web_socket(re.compile(r"/ws/rooms/"), route)
    code = await create_room(solo, rounds=2, answer_seconds=30, reveal_seconds=0, max_players=1)
    await page.click("#start-button")
    await wait_question(solo, 1, 2)
    room_key = f"{live.env['NUXTEST_REDIS_PREFIX']}room:{code}"
    await sync_to_async(redis.Redis.from_url(live.env["REDIS_URL"]).delete)(room_key)
    await sockets[-1].close(code=1011, reason="the server went away")  # the page reconnects
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("This room no longer exists on the server")
    await expect(page.locator("#status")).to_have_text("unavailable")
    await expect(page.locator("#game-panel")).to_be_hidden()
    await expect(page.locator("#players li")).to_have_count(0)
    assert len(sockets) >= 2, "the page reconnected before giving up"
    assert_no_js_errors(solo)


async def test_a_sign_up_error_is_tied_to_its_field_for_screen_readers(
    players: Callable[..., Awaitable[Player]], live: Stack
) -> None:
    guest = await players("guest")
    page = guest.page
    await page.goto("/accounts/signup/")
    await page.fill("#id_username", guest.name)
    await page.fill("#id_password1", PASSWORD)
    await page.fill("#id_password2", PASSWORD + "-not")
    await page.keyboard.press("Enter")
    await expect(page.locator("#form-errors")).to_have_attribute("role", "alert")
    confirm = page.locator("#id_password2")
    await expect(confirm).to_have_attribute("aria-invalid", "true")
    # Every id a field's aria-describedby names is on the page; the error is read with its field.
    missing = await page.evaluate(
        """() => Array.from(document.querySelectorAll('[aria-describedby]'))
          .flatMap((e) => e.getAttribute('aria-describedby').split(/\\s+/))
          .filter((id) => !document.getElementById(id))"""
    )
    assert not missing, f"aria-describedby names missing elements: {missing}"
    await expect(confirm).to_have_accessible_description(re.compile("didn.t match"))
    # The keyboard focus ring on a text field and on the form's button shows against the card.
    await page.locator("#id_username").focus()
    await assert_focus_ring_visible(page, "the user name field")
    await confirm.focus()
    await page.keyboard.press("Tab")
    await expect(page.locator("form.stacked-form button[type=submit]")).to_be_focused()
    await assert_focus_ring_visible(page, "the Sign up button")
    assert_no_js_errors(guest)
