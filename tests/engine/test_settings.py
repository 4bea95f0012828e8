"""Room settings (GAME.md, Rooms) and room codes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game.engine import rules
from game.engine.model import CODE_ALPHABET, CODE_LENGTH, RoomSettings

NUMERIC_FIELDS = ["rounds", "answer_seconds", "reveal_seconds", "max_players"]


def refused_field(raw: dict) -> str:
    with pytest.raises(rules.SettingsError) as info:
        rules.settings_validate(raw)
    return info.value.field


def test_every_bad_field_is_named_at_once_the_first_one_first():
    with pytest.raises(rules.SettingsError) as info:
        rules.settings_validate({"rounds": 0, "answer_seconds": "10", "category": "", "extra": 1})
    assert info.value.field == "extra"
    assert info.value.errors == {
        "extra": "unknown setting",
        "rounds": "must be between 1 and 20",
        "answer_seconds": "must be a number",
        "category": "must be a category slug (letters, digits, - and _, at most 50) or null",
    }


@pytest.mark.parametrize(
    "category", ["a\u0000b", " science", "science ", "sci/ence", "x" * 51, "naïve", 7, ["science"]]
)
def test_a_category_that_cannot_be_a_slug_is_refused_naming_it(category):
    # A NUL reached PostgreSQL and came back a 500 (a security walk-through).
    assert refused_field({"category": category}) == "category"


def test_a_category_slug_passes_to_be_looked_up():
    assert rules.settings_validate({"category": "world-history_2"}).category == "world-history_2"


def test_empty_settings_take_the_documented_defaults():
    settings = rules.settings_validate({})
    assert settings == RoomSettings(
        rounds=5, answer_seconds=10, reveal_seconds=3, max_players=8, category=None
    )
    assert settings.answer_ms == 10_000
    assert settings.reveal_ms == 3_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 1),
        ("rounds", 20),
        ("answer_seconds", 0.5),
        ("answer_seconds", 60),
        ("reveal_seconds", 0),
        ("reveal_seconds", 10),
        ("max_players", 1),
        ("max_players", 8),
    ],
)
def test_each_bound_of_each_setting_is_accepted(field, value):
    settings = rules.settings_validate({field: value})
    assert getattr(settings, field) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 0),
        ("rounds", 21),
        ("answer_seconds", 0.49),
        ("answer_seconds", 60.01),
        ("reveal_seconds", -0.01),
        ("reveal_seconds", 10.01),
        ("max_players", 0),
        ("max_players", 9),
        ("rounds", -5),
    ],
)
def test_a_value_just_outside_the_range_is_refused_naming_the_field(field, value):
    with pytest.raises(rules.SettingsError) as info:
        rules.settings_validate({field: value})
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.code == "invalid_field"
    assert isinstance(info.value, rules.RuleError)


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", [True, False, "5", "", None, [5], {"v": 5}])
def test_a_non_number_is_refused_naming_the_field(field, value):
    assert refused_field({field: value}) == field


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_naming_the_field(field, value):
    assert refused_field({field: value}) == field


@pytest.mark.parametrize("field", ["rounds", "max_players"])
@pytest.mark.parametrize("value", [2.5, 1.0001, 7.9])
def test_fractional_counts_are_refused(field, value):
    assert refused_field({field: value}) == field


@pytest.mark.parametrize("field", ["rounds", "max_players"])
def test_a_whole_float_count_is_accepted_as_an_integer(field):
    value = getattr(rules.settings_validate({field: 3.0}), field)
    assert value == 3
    assert isinstance(value, int)


def test_fractional_answer_seconds_are_accepted_and_give_whole_milliseconds():
    settings = rules.settings_validate({"answer_seconds": 2.5, "reveal_seconds": 0.25})
    assert settings.answer_seconds == 2.5
    assert settings.answer_ms == 2_500
    assert settings.reveal_ms == 250


def test_an_unknown_setting_is_refused_naming_it():
    assert refused_field({"rounds": 3, "roundz": 3}) == "roundz"


def test_a_valid_setting_does_not_hide_an_invalid_one():
    assert refused_field({"rounds": 3, "max_players": 12}) == "max_players"


@pytest.mark.parametrize("category", [None, "science", "world-history"])
def test_category_is_null_or_a_slug(category):
    assert rules.settings_validate({"category": category}).category == category


@pytest.mark.parametrize("category", ["", "   ", 5, True, ["science"], {"slug": "x"}])
def test_category_that_is_empty_or_not_a_string_is_refused(category):
    assert refused_field({"category": category}) == "category"


@given(
    rounds=st.integers(1, 20),
    answer_seconds=st.floats(0.5, 60, allow_nan=False),
    reveal_seconds=st.floats(0, 10, allow_nan=False),
    max_players=st.integers(1, 8),
)
def test_any_in_range_combination_is_accepted_unchanged(rounds, answer_seconds, reveal_seconds, max_players):
    raw = {
        "rounds": rounds,
        "answer_seconds": answer_seconds,
        "reveal_seconds": reveal_seconds,
        "max_players": max_players,
    }
    settings = rules.settings_validate(raw)
    assert (settings.rounds, settings.answer_seconds, settings.reveal_seconds, settings.max_players) == (
        rounds,
        answer_seconds,
        reveal_seconds,
        max_players,
    )
    assert 500 <= settings.answer_ms <= 60_000


# --- Room codes ----------------------------------------------------------------------------------


def test_the_code_alphabet_has_no_ambiguous_characters():
    assert CODE_ALPHABET == "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    assert not set("IO01") & set(CODE_ALPHABET)
    assert CODE_LENGTH == 6


@given(seed=st.integers())
def test_a_generated_code_is_six_characters_from_the_alphabet(seed):
    code = rules.code_generate(random.Random(seed))
    assert len(code) == 6
    assert set(code) <= set(CODE_ALPHABET)
    assert not set(code) & set("IO01")
    assert rules.code_is_valid(code)


def test_code_generation_is_driven_by_the_rng_passed_in():
    assert rules.code_generate(random.Random(7)) == rules.code_generate(random.Random(7))
    rng = random.Random(7)
    codes = {rules.code_generate(rng) for _ in range(200)}
    assert len(codes) == 200


@pytest.mark.parametrize("code", ["ABC234", "ZZZZZZ", "234567", "HJKMNP"])
def test_a_well_formed_code_is_valid(code):
    assert rules.code_is_valid(code)


@pytest.mark.parametrize(
    "code", ["", "ABC23", "ABC2345", "ABCDEI", "ABCDEO", "ABCDE0", "ABCDE1", "abc234", "ABC 23", "ABC-23"]
)
def test_a_malformed_code_is_invalid(code):
    assert not rules.code_is_valid(code)


@pytest.mark.parametrize("field", ["rounds", "answer_seconds", "reveal_seconds", "max_players"])
def test_a_huge_integer_setting_is_refused_naming_the_field(field):
    with pytest.raises(rules.SettingsError) as err:
        rules.settings_validate({field: int("1" + "0" * 400)})
    assert err.value.field == field
