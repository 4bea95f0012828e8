"""Property-based fuzz of API bodies: any JSON gets a JSON answer, never a 500, and a
refused body stores nothing."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from game import store

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
setting_values = st.one_of(json_values, st.integers(-5, 70), st.floats(-1, 70, allow_nan=False))
room_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "rounds": setting_values,
            "answer_seconds": setting_values,
            "reveal_seconds": setting_values,
            "max_players": setting_values,
            "category": json_values,
            "settings": json_values,
            "other": json_values,
        },
    ),
    json_values,
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def stored_rooms() -> int:
    return len(store.sync_client().keys(store.key("room", "*")))


@FUZZ
@given(body=room_bodies)
def test_any_room_body_gets_201_or_a_named_400_and_a_refusal_stores_nothing(
    make_user: Any, questions: None, body: Any
) -> None:
    user = get_user_model().objects.filter(username="fuzz").first() or make_user("fuzz")
    client = APIClient()
    client.force_authenticate(user)
    before = stored_rooms()
    response = client.post("/api/rooms/", data=json.dumps(body), content_type="application/json")
    assert response.status_code in {201, 400}, (body, response.status_code, response.content[:300])
    assert isinstance(response.json(), dict)
    if response.status_code == 400:
        assert response.json()["detail"]
        assert stored_rooms() == before
    else:
        assert stored_rooms() == before + 1


@FUZZ
@given(
    body=st.one_of(
        st.fixed_dictionaries({}, optional={"username": json_values, "password": json_values}), json_values
    )
)
def test_any_signup_body_gets_a_json_answer_never_a_500(transactional_db: None, body: Any) -> None:
    response = APIClient().post("/api/auth/signup/", data=json.dumps(body), content_type="application/json")
    assert response.status_code in {201, 400, 429}, (body, response.status_code, response.content[:300])
    assert "detail" in response.json() or response.status_code == 201


@FUZZ
@given(
    body=st.one_of(
        st.fixed_dictionaries({}, optional={"username": json_values, "password": json_values}), json_values
    )
)
def test_any_token_body_gets_a_json_answer_never_a_500(transactional_db: None, body: Any) -> None:
    response = APIClient().post("/api/auth/token/", data=json.dumps(body), content_type="application/json")
    assert response.status_code in {400, 401, 429}, (body, response.status_code, response.content[:300])
    assert "detail" in response.json()
