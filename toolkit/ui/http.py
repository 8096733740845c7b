"""The Gradio app's front door: Host and Origin checks and an optional token, as one ASGI middleware.

The app is a single-user tool on the user's own machine. Left running, it is reachable by any
web page the user visits: a page can point a name it controls at 127.0.0.1 (DNS rebinding) and
then talk to the app as if same-origin. So every request passes :class:`FrontDoor` first:

- **Host**: the ``Host`` header must name this machine as the user reaches it: ``localhost``,
  ``127.0.0.1`` or ``::1`` (always); when the app is bound to another address, also that address,
  this machine's host name and any IP literal (DNS rebinding needs a name, never an IP literal);
  with ``--share``, ``*.gradio.live``; plus ``--allowed-hosts`` (``*``: any). Refused: 403.
- **Origin**, for state-changing requests (any method but GET/HEAD/OPTIONS, and websockets): when
  the browser sends one it must be the page's own origin (same ``host:port`` as ``Host``) or a
  ``--allowed-hosts`` name. Refused: 403. Clients that send no ``Origin`` (gradio_client, curl) pass.
- **Token** (``--auth-token`` or ``FLUX_UI_TOKEN``; required by ``main`` when the app is bound to a
  non-loopback address or shared): every request carries ``Authorization: Bearer <token>``, or
  the session cookie the app sets when the page is opened once as ``/?token=<token>`` (the cookie
  holds an HMAC of the token, not the token; ``HttpOnly``, ``SameSite=Strict``). Refused: 401.

Pure Starlette/ASGI, no Gradio: unit-tested with httpx against a tiny app, and end to end in
tests/ui/test_flux_train_ui_security.py.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "flux_ui_session"
TOKEN_ENV = "FLUX_UI_TOKEN"
SHARE_SUFFIX = ".gradio.live"
STARTUP_PATH = "/gradio_api/startup-events"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def hostname_of(netloc: str) -> str:
    """``Host`` header or URL netloc -> lower-case host name without port (IPv6 brackets removed)."""
    netloc = netloc.strip().lower().rsplit("@", 1)[-1]
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.split(":", 1)[0] if netloc.count(":") <= 1 else netloc


class HostPolicy:
    """Which Host names this app answers to (see the module docstring)."""

    def __init__(self, bind: str, extra: list[str] = (), share: bool = False):
        self.any = "*" in extra
        self.extra = {hostname_of(h) for h in extra if h and h != "*"}
        self.names = set(LOOPBACK_NAMES) | self.extra
        self.any_ip = not is_loopback(bind)
        if self.any_ip:
            self.names |= {hostname_of(bind), socket.gethostname().lower(), socket.getfqdn().lower()}
            self.names.discard("0.0.0.0")
            self.names.discard("::")
        self.share = share

    def allows(self, host: str) -> bool:
        if not host:
            return False
        if self.any or host in self.names or is_loopback(host):
            return True
        if self.any_ip and _is_ip(host):
            return True
        return self.share and host.endswith(SHARE_SUFFIX)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"flux-ui-session", hashlib.sha256).hexdigest()


class FrontDoor:
    """ASGI middleware enforcing the :class:`HostPolicy`, same-origin writes and the token."""

    def __init__(self, app, policy: HostPolicy, token: str | None = None):
        self.app, self.policy, self.token = app, policy, token or None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        host = hostname_of(host_header)
        if not self.policy.allows(host):
            return await self._refuse(
                scope,
                receive,
                send,
                403,
                f"Host '{host_header}' is not allowed: open the app as http://127.0.0.1 or "
                "http://localhost, or start it with --allowed-hosts NAME",
            )
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        writes = scope["type"] == "websocket" or method not in SAFE_METHODS
        if writes and origin is not None and not self._origin_ok(origin, host_header):
            return await self._refuse(scope, receive, send, 403, f"cross-origin request from '{origin}' refused")
        if self.token is None:
            return await self.app(scope, receive, send)
        if self._authorized(headers) or self._launch_probe(scope):
            return await self.app(scope, receive, send)
        given = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("token")
        opening = scope["type"] == "http" and method == "GET" and given is not None
        if opening and hmac.compare_digest(given.encode(), self.token.encode()):
            return await self._set_session(scope, receive, send)
        return await self._refuse(
            scope,
            receive,
            send,
            401,
            "this app needs its token: open it once as /?token=<token> (sets a session "
            "cookie), or send 'Authorization: Bearer <token>'",
        )

    def _origin_ok(self, origin: str, host_header: str) -> bool:
        parts = urlsplit(origin)
        if not parts.netloc:
            return False  # "null" (sandboxed frames, file://)
        if parts.netloc.lower() == host_header.lower():
            return True  # the app's own page
        return self.policy.any or hostname_of(parts.netloc) in self.policy.extra

    @staticmethod
    def _launch_probe(scope) -> bool:
        """Gradio's launch() calls this endpoint on itself (without our token) before it returns."""
        client = (scope.get("client") or ("",))[0]
        return scope.get("path") == STARTUP_PATH and scope.get("method") == "GET" and is_loopback(client)

    def _authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        wanted = session_value(self.token)
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and hmac.compare_digest(value.encode(), wanted.encode()):
                return True
        return False

    async def _set_session(self, scope, receive, send):
        from starlette.responses import RedirectResponse

        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
        target = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session_value(self.token), httponly=True, samesite="strict")
        await response(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, message: str):
        if scope["type"] == "websocket":
            from starlette.websockets import WebSocketClose

            return await WebSocketClose(code=1008, reason=message[:120])(scope, receive, send)
        from starlette.responses import PlainTextResponse

        await PlainTextResponse(message + "\n", status_code=status)(scope, receive, send)
