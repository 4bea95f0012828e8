"""Plain data for one room and its game; no Django, Redis or I/O here.

Times are integers, milliseconds since the Unix epoch, always passed in by the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Bumped when the stored shape changes incompatibly; the store refuses other versions.
FORMAT_VERSION = 1

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6

LOBBY = "lobby"
PLAYING = "playing"
FINISHED = "finished"
ABANDONED = "abandoned"
STATUSES = (LOBBY, PLAYING, FINISHED, ABANDONED)

TRIGGER_ALL_ANSWERED = "all_answered"
TRIGGER_DEADLINE = "deadline"


@dataclass
class RoomSettings:
    """What the host chose at creation (validated by `rules.settings_validate`)."""

    rounds: int = 5
    answer_seconds: float = 10.0
    reveal_seconds: float = 3.0
    max_players: int = 8
    category: str | None = None

    @property
    def answer_ms(self) -> int:
        """The answering window in milliseconds."""
        return round(self.answer_seconds * 1000)

    @property
    def reveal_ms(self) -> int:
        """The pause after each result in milliseconds."""
        return round(self.reveal_seconds * 1000)


@dataclass
class QuestionData:
    """A question as the game uses it: text, four options and the correct index."""

    id: int
    text: str
    options: list[str]
    correct: int


@dataclass
class Answer:
    """One accepted answer of one player in one round."""

    option: int
    at: int
    elapsed_ms: int
    correct: bool
    points: int


@dataclass
class Round:
    """The current (or last) round: its shuffled question and the answers so far."""

    number: int
    question_id: int
    text: str
    options: list[str]
    correct: int
    opened_at: int
    deadline: int
    answers: dict[int, Answer] = field(default_factory=dict)
    closed_at: int | None = None
    trigger: str | None = None

    @property
    def is_open(self) -> bool:
        """True until the round has been closed."""
        return self.closed_at is None


@dataclass
class Player:
    """A member of the room. Members stay members when they disconnect."""

    id: int
    name: str
    score: int = 0
    correct: int = 0
    # Sum of the times of correct answers (tie-break) and of all accepted answers (mean).
    correct_ms: int = 0
    answered: int = 0
    answered_ms: int = 0
    # Open connections, as opaque ids ("<instance>|<channel>"); connected while non-empty.
    conns: list[str] = field(default_factory=list)
    # When they became a member (ms); None in rooms stored before the field existed.
    joined_at: int | None = None

    @property
    def connected(self) -> bool:
        """True while at least one of the player's connections is open."""
        return bool(self.conns)


@dataclass
class Room:
    """One room: lobby, game in progress, or its final state."""

    code: str
    host: int | None
    settings: RoomSettings
    created_at: int
    quick: bool = False
    status: str = LOBBY
    players: list[Player] = field(default_factory=list)
    seq: int = 0
    game_id: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    plan: list[QuestionData] = field(default_factory=list)
    round: Round | None = None
    # When the next step is due: the next question after a reveal, or a quick-match start.
    next_at: int | None = None
    # Since when nobody has been connected (None while somebody is).
    empty_since: int | None = None
    results_stored: bool = False
    # Quick match: seats held for players placed by matchmaking who have not connected yet,
    # as [player id, held until (ms)]. Not members (GAME.md: a member from the first
    # connection); they only keep other placements and joiners from taking the seat.
    held: list[list[int]] = field(default_factory=list)
    # The room's latest broadcasts (at most rules.OUTBOX_MAX, oldest first), written by the
    # transition that made them, and when the newest was made. The process that made them
    # publishes them after its compare-and-set; if it dies in between, the sweeper publishes
    # them again (rules.unpublished), so a round's result or `game_over` is never lost with it.
    outbox: list[dict[str, Any]] = field(default_factory=list)
    outbox_at: int | None = None

    def player(self, player_id: int) -> Player | None:
        """The member with this id, or None."""
        for p in self.players:
            if p.id == player_id:
                return p
        return None

    @property
    def connected_players(self) -> list[Player]:
        """Members with at least one open connection."""
        return [p for p in self.players if p.connected]


def room_to_dict(room: Room) -> dict[str, Any]:
    """Serialise a room to JSON-compatible data (with the format version)."""
    data = asdict(room)
    data["v"] = FORMAT_VERSION
    if room.round is not None:
        # JSON object keys are strings.
        data["round"]["answers"] = {str(k): v for k, v in data["round"]["answers"].items()}
    return data


def room_from_dict(data: dict[str, Any]) -> Room:
    """Rebuild a room from `room_to_dict` output.

    Fields this code does not know are ignored: a field added by a newer release (with a
    default, in the same format version) must not stop an older process from reading the
    room while both run side by side during a rolling deploy.
    """
    data = dict(data)
    version = data.pop("v", None)
    if version != FORMAT_VERSION:
        raise ValueError(f"room stored in format {version!r}, expected {FORMAT_VERSION}")
    rnd = data.pop("round")
    settings, players, plan = data.pop("settings"), data.pop("players"), data.pop("plan")
    if rnd is not None:
        rnd = dict(rnd)
        answers = rnd.pop("answers")
    return Room(
        **_known(Room, data),
        settings=RoomSettings(**_known(RoomSettings, settings)),
        players=[Player(**_known(Player, p)) for p in players],
        plan=[QuestionData(**_known(QuestionData, q)) for q in plan],
        round=None
        if rnd is None
        else Round(
            **_known(Round, rnd),
            answers={int(k): Answer(**_known(Answer, a)) for k, a in answers.items()},
        ),
    )


_FIELDS: dict[type, frozenset[str]] = {}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in fields(cls))
    if data.keys() <= names:
        return data  # the usual case, on every answer's path: nothing to drop
    return {k: v for k, v in data.items() if k in names}
