"""The API's JSON parser: DRF's, with a body nested too deeply refused as a 400."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser, answering a body nested deeper than Python's recursion limit
    (about a thousand `[`) with a 400 `{"detail": ...}`.

    DRF turns a ValueError into a ParseError but lets the decoder's RecursionError through:
    that was an HTML 500 and an ERROR line (a Sentry event) per request on every JSON
    endpoint, the unauthenticated sign-up and token ones included.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body is nested too deeply") from exc


class SettingsJSONParser(JSONParser):
    """For room settings: `NaN` and `Infinity`, which are not JSON, are read as numbers, so
    that the settings check refuses them naming their field (GAME.md: "a message naming the
    field"), as it does a `1e999`; the strict parser answered a 400 that named none."""

    strict = False
