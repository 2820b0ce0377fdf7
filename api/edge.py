"""The ASGI edge in front of the UI and the API: trusted Host headers, the sign-in pages (wrong passwords slowed
and throttled) and the session gate.

Access is decided here, once, for every path; Streamlit's pages only read who signed in (pages/_ui.py).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.limits import RequestLimiter
from pipeline.settings import Settings
from taskqueue.accounts import SESSION_COOKIE, SIGN_IN_FAILED, Sessions, check_password, is_loopback, sign_in_required
from taskqueue.store import RunStore, User, normal_email

SIGN_IN_PATH = "/auth/sign-in"
SIGN_OUT_PATH = "/auth/sign-out"
OPEN_PATHS = frozenset({"/_stcore/health"})  # a load balancer's probe says nothing about anyone
PROBE_PATHS = frozenset({"/_stcore/health", "/api/health"})
MAX_FORM_BYTES = 8 * 1024
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def host_name(value: str) -> str:
    """`example.com:8501` -> `example.com`, `[::1]:8501` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host names answered; None: any (TRUSTED_HOSTS=*, or HOST is a wildcard and no PUBLIC_BASE_URL says
    which name the studio has; sign-in is required there, which is what stands against a rebound page)."""
    if settings.trusted_hosts:
        names = {host_name(h) for h in settings.trusted_hosts}
        return None if "*" in names else frozenset(names)
    names: set[str] = set()
    if settings.public_base_url:
        names.add(host_name(urlsplit(settings.public_base_url).netloc))
    if settings.host not in WILDCARD_HOSTS:
        names.add(host_name(settings.host))
        if is_loopback(settings.host):
            names |= {"127.0.0.1", "localhost", "::1"}
    elif not names:
        return None
    return frozenset(names)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header carries no session
        return None
    return jar[name].value if name in jar else None


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//other.site` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _respond(send: Send, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), (b"x-frame-options", b"DENY"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _respond(send, 303, b"", headers=[(b"location", location.encode("latin-1")), *(headers or [])])


async def _read_form(receive: Receive) -> dict[str, str] | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body"):
            break
    fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    return {k: v[0] for k, v in fields.items()}


@dataclass(frozen=True)
class ThrottleRule:
    failures: int
    window_seconds: int


PER_EMAIL = ThrottleRule(5, 300)  # a person mistyping gets five tries in five minutes
PER_CLIENT = ThrottleRule(20, 300)  # one address trying many emails
FAILED_SIGN_IN_DELAY_SECONDS = 1.0  # every failure is answered this late (without holding a thread)


class SignInThrottle:
    """Failed sign-ins per email and per client address, counted with the API's rate limiter (the `limits`
    library): in this process, or in Redis when REDIS_URL is set, so every web server shares the count."""

    def __init__(self, redis_url: str | None = None, prefix: str = "studio"):
        self.by_email = RequestLimiter(PER_EMAIL.failures, redis_url, f"{prefix}:signin-email",
                                       window_seconds=PER_EMAIL.window_seconds)
        self.by_client = RequestLimiter(PER_CLIENT.failures, redis_url, f"{prefix}:signin-client",
                                        window_seconds=PER_CLIENT.window_seconds)

    def retry_after(self, email: str, client: str) -> float | None:
        """Seconds until another try is allowed, None when it is allowed now."""
        wait = max(self.by_email.wait(normal_email(email)), self.by_client.wait(client))
        return wait if wait > 0 else None

    def failed(self, email: str, client: str) -> None:
        self.by_email.take(normal_email(email))
        self.by_client.take(client)

    def succeeded(self, email: str) -> None:
        self.by_email.forget(normal_email(email))


def host_allowed(scope: Scope, hosts: frozenset[str] | None) -> bool:
    if hosts is None:
        return True
    host = _header(scope, b"host")
    return host is not None and host_name(host) in hosts


async def answer_bad_host(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await _respond(send, 400, b'{"status":"error","error":"Invalid Host header: this studio does not answer to '
                              b'that name (TRUSTED_HOSTS)"}', "application/json")


class HostCheck:
    """The Edge's Host check alone, for the API served without the UI (`api.app:standalone_app`)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and scope.get("path") not in PROBE_PATHS and not host_allowed(scope, self.hosts):
            await answer_bad_host(scope, send)
            return
        await self.app(scope, receive, send)


class Edge:
    """Host check for every request; with sign-in required, a session for everything but /api (which has its keys)
    and the sign-in pages themselves."""

    def __init__(self, settings: Settings, store: RunStore, secret: str, ui: ASGIApp,
                 api: Callable[[Scope, Receive, Send], Awaitable[bool]]):
        self.settings = settings
        self.store = store
        self.sessions = Sessions(secret, settings.session_seconds)
        self.hosts = allowed_hosts(settings)
        self.required = sign_in_required(settings)
        self.throttle = SignInThrottle(settings.redis_url, settings.queue_name)
        self.ui = ui
        self.api = api  # answers and returns True for an /api path
        self.secure_cookie = (settings.public_base_url or "").startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.ui(scope, receive, send)
            return
        # Liveness probes often name the server by its address; those two answers say nothing about anyone
        if not self._host_ok(scope) and scope.get("path") not in PROBE_PATHS:
            await self._bad_host(scope, send)
            return
        if await self.api(scope, receive, send):
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and path in (SIGN_IN_PATH, SIGN_OUT_PATH):
            await (self._sign_in(scope, receive, send) if path == SIGN_IN_PATH else self._sign_out(scope, send))
            return
        if self.required and path not in OPEN_PATHS and not await self._signed_in(scope):
            await self._turn_away(scope, send)
            return
        await self.ui(scope, receive, send)

    # --- hosts ----------------------------------------------------------------------------------

    def _host_ok(self, scope: Scope) -> bool:
        return host_allowed(scope, self.hosts)

    async def _bad_host(self, scope: Scope, send: Send) -> None:
        await answer_bad_host(scope, send)

    # --- sessions -------------------------------------------------------------------------------

    async def _signed_in(self, scope: Scope) -> bool:
        token = _cookie(scope, SESSION_COOKIE)
        if self.sessions.claims(token) is None:  # no database read for a missing or forged cookie
            return False
        return await run_in_threadpool(self.sessions.user, self.store, token) is not None

    async def _turn_away(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("method") in ("GET", "HEAD"):
            target = scope.get("path", "/")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            await _redirect(send, f"{SIGN_IN_PATH}?next={quote(target, safe='')}")
            return
        await _respond(send, 401, b'{"status":"error","error":"Sign in first"}', "application/json")

    def _cookie_header(self, value: str, max_age: int) -> tuple[bytes, bytes]:
        parts = [f"{SESSION_COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        if self.secure_cookie:
            parts.append("Secure")
        return b"set-cookie", "; ".join(parts).encode("latin-1")

    async def _sign_out(self, scope: Scope, send: Send) -> None:
        claims = self.sessions.claims(_cookie(scope, SESSION_COOKIE))
        if claims is not None:  # a copied cookie stops working too, not only this browser's
            await run_in_threadpool(self.store.end_sessions, claims[0])
        await _redirect(send, SIGN_IN_PATH, [self._cookie_header("", 0)])

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        if scope.get("method") != "POST":
            await _respond(send, 200, sign_in_page(safe_next(query.get("next"))))
            return
        origin = _header(scope, b"origin")  # login CSRF: another site's page posting its own account's password
        if origin and origin != "null" and self.hosts is not None \
                and host_name(urlsplit(origin).netloc) not in self.hosts:
            await _respond(send, 403, sign_in_page("/", "This form was sent from another site."))
            return
        form = await _read_form(receive) or {}
        email, password, target = form.get("email", ""), form.get("password", ""), safe_next(form.get("next"))
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.retry_after(email, client)
        if wait is not None:
            seconds = max(1, round(wait))
            await _respond(send, 429, sign_in_page(target, f"Too many failed sign-ins: try again in {seconds} s.",
                                                   email), headers=[(b"retry-after", str(seconds).encode())])
            return
        user = await run_in_threadpool(check_password, self.store, email, password) if email and password else None
        if user is None:
            self.throttle.failed(email, client)
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_SECONDS)  # slows guessing without holding a thread
            await _respond(send, 401, sign_in_page(target, SIGN_IN_FAILED + ".", email))
            return
        self.throttle.succeeded(email)
        await _redirect(send, target, [self._cookie_header(self.sessions.issue(user), self.settings.session_seconds)])


SIGN_IN_STYLE = """
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #0E0F14; color: #EDEEF3;
       font-family: "Source Sans Pro", system-ui, -apple-system, sans-serif; }
main { width: min(92vw, 380px); background: #1A1C25; border: 1px solid #2A2D3A; border-radius: 0.75rem;
       padding: 2rem 1.75rem; }
h1 { font-size: 1.6rem; margin: 0 0 0.25rem; } p { color: #A3A8B8; margin: 0 0 1.25rem; line-height: 1.45; }
label { display: block; font-size: 0.9rem; margin: 0.9rem 0 0.35rem; }
input { box-sizing: border-box; width: 100%; padding: 0.6rem 0.7rem; border-radius: 0.6rem; font-size: 1rem;
        border: 1px solid #2A2D3A; background: #0E0F14; color: #EDEEF3; }
input:focus { outline: 2px solid #FF4F7B; border-color: transparent; }
button { margin-top: 1.4rem; width: 100%; padding: 0.65rem; border: 0; border-radius: 0.6rem; font-size: 1rem;
         background: #FF4F7B; color: #0E0F14; font-weight: 600; cursor: pointer; }
.error { background: #3A1A22; border: 1px solid #7A2A3B; color: #FFB3C4; padding: 0.6rem 0.75rem;
         border-radius: 0.6rem; margin-bottom: 0.5rem; }
"""


def sign_in_page(next_path: str, error: str = "", email: str = "") -> bytes:
    """The sign-in form, self-contained (no script, no outside asset), in the studio's colours."""
    notice = f'<div class="error" role="alert">{html.escape(error)}</div>' if error else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Artist Content Studio</title><style>{SIGN_IN_STYLE}</style></head>
<body><main>
<h1>Artist Content Studio</h1><p>Sign in to make and see your videos.</p>{notice}
<form method="post" action="{SIGN_IN_PATH}">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{html.escape(email)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></main></body></html>"""
    return page.encode("utf-8")


def session_user(settings: Settings, store: RunStore, secret: str, token: str | None) -> User | None:
    """For the pages: the user of a session cookie the edge let through (None when there is none)."""
    return Sessions(secret, settings.session_seconds).user(store, token)
