"""Response headers of pages and API: CSP, HSTS, nosniff, referrer policy, frame denial, cookies, CORS."""

from __future__ import annotations

import json

import pytest

from tests.deploy.support import production_env, run_python

PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/leaderboard/"]
API = "/api/leaderboard/"


def csp_directives(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*PAGES, API])
def test_every_page_and_the_api_send_the_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = csp_directives(response["Content-Security-Policy"])
    assert csp["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_the_csp_allows_only_the_site_itself_and_no_inline_code(client, path):
    csp = csp_directives(client.get(path)["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    for sources in csp.values():
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
    # The game's own WebSocket: 'self' (CSP 3) and the allowed hosts' ws(s) URLs for older browsers.
    assert "'self'" in csp["connect-src"]
    assert "ws://localhost:*" in csp["connect-src"]
    assert "wss://localhost:*" in csp["connect-src"]


@pytest.mark.django_db
def test_the_pages_carry_no_inline_script_or_style(client, make_user):
    client.force_login(make_user("alice"))
    for path in [*PAGES, "/rooms/ABCDEF/", "/history/"]:
        html = client.get(path).content.decode()
        for chunk in html.split("<script")[1:]:
            tag = chunk.split(">", 1)[0]
            # Only external scripts, or data blocks (json_script) a browser never executes.
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert "<style" not in html, path
        assert " style=" not in html, path
        assert " onclick=" not in html and " onload=" not in html, path


PRODUCTION_SCRIPT = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="quiz.example.com")
out = {}
def grab(name, path, **extra):
    r = client.get(path, **extra)
    out[name] = {
        "status": r.status_code,
        "headers": {k.lower(): v for k, v in r.headers.items()},
        "cookies": {k: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"]),
                        "samesite": m["samesite"]} for k, m in r.cookies.items()},
    }
grab("page", "/accounts/login/", secure=True)
grab("page_http", "/accounts/login/")
grab("page_proxied", "/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
grab("api", "/api/rooms/", secure=True)
grab("healthz_http", "/healthz")
grab("metrics_http", "/metrics", REMOTE_ADDR="10.0.0.9")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def production_responses() -> dict:
    result = run_python(["-c", PRODUCTION_SCRIPT], production_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_pages_and_api_send_hsts_with_subdomains_and_preload(production_responses):
    for name in ("page", "api"):
        headers = production_responses[name]["headers"]
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        csp = csp_directives(headers["content-security-policy"])
        assert csp["connect-src"] == ["'self'", "wss://quiz.example.com"]
    assert production_responses["page"]["status"] == 200
    assert production_responses["api"]["status"] == 401


def test_production_cookies_are_secure_and_http_only(production_responses):
    cookies = production_responses["page"]["cookies"]
    assert "csrftoken" in cookies
    for cookie in cookies.values():
        assert cookie["secure"] and cookie["httponly"], cookies
        assert cookie["samesite"] == "Lax"


def test_production_redirects_plain_http_except_probes_and_scrapes(production_responses):
    assert production_responses["page_http"]["status"] == 301
    assert (
        production_responses["page_http"]["headers"]["location"] == "https://quiz.example.com/accounts/login/"
    )
    # Behind the trusted proxy, X-Forwarded-Proto: https is HTTPS.
    assert production_responses["page_proxied"]["status"] == 200
    assert production_responses["healthz_http"]["status"] == 200
    assert production_responses["metrics_http"]["status"] == 200
    # No HSTS over plain HTTP (browsers ignore it there anyway).
    assert "strict-transport-security" not in production_responses["healthz_http"]["headers"]


# --- CORS: the API only, the configured origins only ----------------------------------------


@pytest.mark.django_db
def test_no_cross_origin_access_by_default(client):
    response = client.get(API, HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response


@pytest.mark.django_db
def test_an_allowed_origin_may_call_the_api_but_not_the_pages(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    response = client.get(API, HTTP_ORIGIN="https://app.example.com")
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Credentials" not in response
    preflight = client.options(
        "/api/rooms/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    page = client.get("/leaderboard/", HTTP_ORIGIN="https://app.example.com")
    assert "Access-Control-Allow-Origin" not in page
    other = client.get(API, HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
