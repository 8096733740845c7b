"""toolkit.ui.http: the Gradio app's front door (Host, Origin, token) on a tiny ASGI app, over httpx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from toolkit.ui.http import (
    SESSION_COOKIE,
    FrontDoor,
    HostPolicy,
    hostname_of,
    session_value,
)


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def call(door: FrontDoor, method: str, url: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=door)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7860") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def test_hostname_of():
    assert hostname_of("127.0.0.1:7860") == "127.0.0.1"
    assert hostname_of("[::1]:7860") == "::1"
    assert hostname_of("LocalHost") == "localhost"
    assert hostname_of("evil.example:80") == "evil.example"


@pytest.mark.parametrize(
    "host,allowed",
    [
        ("127.0.0.1:7860", True),
        ("localhost:7860", True),
        ("[::1]:7860", True),
        ("127.0.0.2", True),
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:7860", False),
        ("192.168.1.5:7860", False),
        ("", False),
    ],
)
def test_loopback_bind_answers_only_to_loopback_names(host, allowed):
    door = FrontDoor(ok_app, HostPolicy("127.0.0.1"))
    response = call(door, "GET", "/", headers={"Host": host})
    assert response.status_code == (200 if allowed else 403), response.text
    if not allowed:
        assert "is not allowed" in response.text and "--allowed-hosts" in response.text


def test_allowed_hosts_share_and_a_network_bind():
    assert (
        call(
            FrontDoor(ok_app, HostPolicy("127.0.0.1", ["ui.lan"])), "GET", "/", headers={"Host": "ui.lan:7860"}
        ).status_code
        == 200
    )
    assert (
        call(FrontDoor(ok_app, HostPolicy("127.0.0.1", ["*"])), "GET", "/", headers={"Host": "any.example"}).status_code
        == 200
    )
    shared = FrontDoor(ok_app, HostPolicy("127.0.0.1", share=True))
    assert call(shared, "GET", "/", headers={"Host": "abc123.gradio.live"}).status_code == 200
    assert call(shared, "GET", "/", headers={"Host": "gradio.live.evil.example"}).status_code == 403
    lan = FrontDoor(ok_app, HostPolicy("0.0.0.0"))  # IP literals pass: DNS rebinding needs a name
    assert call(lan, "GET", "/", headers={"Host": "192.168.1.5:7860"}).status_code == 200
    assert call(lan, "GET", "/", headers={"Host": "rebind.evil.example:7860"}).status_code == 403


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_state_changing_requests_must_come_from_the_apps_own_page(method):
    door = FrontDoor(ok_app, HostPolicy("127.0.0.1"))
    own = {"Host": "127.0.0.1:7860", "Origin": "http://127.0.0.1:7860"}
    assert call(door, method, "/gradio_api/queue/join", headers=own).status_code == 200
    for origin in ("http://evil.example", "null", "http://127.0.0.1:3000", "http://localhost:7860"):
        response = call(door, method, "/gradio_api/queue/join", headers={**own, "Origin": origin})
        assert response.status_code == 403 and "cross-origin" in response.text, origin
    assert call(door, method, "/x", headers={"Host": "127.0.0.1:7860"}).status_code == 200  # no Origin: a client
    # GET is not state-changing: a foreign Origin on a read is left to the browser's CORS rules.
    assert call(door, "GET", "/", headers={**own, "Origin": "http://evil.example"}).status_code == 200


def test_token_bearer_cookie_and_the_one_time_query():
    door = FrontDoor(ok_app, HostPolicy("127.0.0.1"), token="s3cret")
    assert call(door, "GET", "/").status_code == 401
    assert call(door, "GET", "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(door, "GET", "/?token=wrong").status_code == 401
    assert call(door, "POST", "/x?token=s3cret").status_code == 401  # the query only opens a session on GET
    assert call(door, "GET", "/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    opened = call(door, "GET", "/?token=s3cret&view=jobs")
    assert opened.status_code == 303 and opened.headers["location"] == "/?view=jobs"
    cookie = opened.headers["set-cookie"]
    assert f"{SESSION_COOKIE}={session_value('s3cret')}" in cookie and "s3cret;" not in cookie
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert call(door, "GET", "/", headers={"Cookie": f"{SESSION_COOKIE}={session_value('s3cret')}"}).status_code == 200
    assert call(door, "GET", "/", headers={"Cookie": f"{SESSION_COOKIE}={session_value('other')}"}).status_code == 401
    # The Host check comes first: a rebinding page holding a stolen cookie is still refused.
    assert call(door, "GET", "/", headers={"Host": "evil.example", "Authorization": "Bearer s3cret"}).status_code == 403
