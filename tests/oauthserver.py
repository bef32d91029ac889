"""A real OAuth 2.0 authorization server on a loopback port, for the connection tests:
the authorization code grant with PKCE (S256) and the refresh grant, as a provider runs
them. ``/authorize`` checks the client and its redirect URI, then (``auto_approve``)
redirects the browser back with a code at once, or shows an "Allow / Deny" page; ``deny``
answers ``error=access_denied``. ``/token`` checks the client's credentials, the code (used
once, with its redirect URI) and the PKCE verifier; ``refuse_refresh`` makes the refresh
grant answer ``invalid_grant``. The user who signs in is ``login_as``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Grant:
    user: str
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str


@dataclass
class OAuthServer:
    client_id: str = "genie-test-client"
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_hex(8))
    login_as: str = "alice"
    auto_approve: bool = True
    deny: bool = False
    refuse_refresh: bool = False
    expires_in: int = 3600
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token → user
    issued: list[dict[str, Any]] = field(default_factory=list)  # every token answer
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _serial: itertools.count = field(default_factory=itertools.count)

    def start(self) -> OAuthServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/authorize":
                    server.authorize(self, {k: v[0] for k, v in parse_qs(parts.query).items()})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                if self.path == "/token":
                    server.token(self, form)
                elif self.path == "/authorize/decision":
                    server.decide(self, form)
                else:
                    self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def provider_body(self, slug: str = "calendar", **overrides: Any) -> dict[str, Any]:
        """The ``POST connection-providers`` body for this server."""
        return {
            "slug": slug,
            "name": "Test Calendar",
            "authorize_url": f"{self.base_url}/authorize",
            "token_url": f"{self.base_url}/token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scopes": ["calendar.read", "calendar.write"],
            **overrides,
        }

    # --- endpoints ---------------------------------------------------------------------

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return _answer(handler, 400, {"error": "invalid_request"})
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return _answer(handler, 400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
        if self.auto_approve:
            return self.redirect_back(handler, query, approved=not self.deny)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
        )
        page = (
            "<!doctype html><title>Authorize</title><form method=post action=/authorize/decision>"
            f"{hidden}<p>Genie wants to read your calendar.</p>"
            '<button name="decision" value="allow" id="allow">Allow</button>'
            '<button name="decision" value="deny" id="deny">Deny</button></form>'
        ).encode()
        handler.send_response(200)
        handler.send_header("content-type", "text/html")
        handler.send_header("content-length", str(len(page)))
        handler.end_headers()
        handler.wfile.write(page)
        return None

    def decide(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        decision = form.pop("decision", "deny")
        self.redirect_back(handler, form, approved=decision == "allow" and not self.deny)

    def redirect_back(self, handler: BaseHTTPRequestHandler, query: dict[str, str], *, approved: bool) -> None:
        if approved:
            code = secrets.token_urlsafe(16)
            self.codes[code] = Grant(
                self.login_as,
                query["client_id"],
                query["redirect_uri"],
                query["code_challenge"],
                query.get("scope", ""),
            )
            params = {"code": code, "state": query["state"]}
        else:
            params = {"error": "access_denied", "state": query["state"]}
        handler.send_response(302)
        handler.send_header("location", f"{query['redirect_uri']}?{urlencode(params)}")
        handler.send_header("content-length", "0")
        handler.end_headers()

    def token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        self.token_requests.append(form)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _answer(handler, 401, {"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)  # a code is used once
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                return _answer(handler, 400, {"error": "invalid_grant"})
            if _s256(form.get("code_verifier", "")) != grant.challenge:
                return _answer(handler, 400, {"error": "invalid_grant", "error_description": "PKCE verifier mismatch"})
            return _answer(handler, 200, self.issue(grant.user, grant.scope))
        if form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)  # rotated: used once
            if user is None or self.refuse_refresh:
                return _answer(handler, 400, {"error": "invalid_grant"})
            return _answer(handler, 200, self.issue(user, form.get("scope", "")))
        return _answer(handler, 400, {"error": "unsupported_grant_type"})

    def issue(self, user: str, scope: str) -> dict[str, Any]:
        serial = next(self._serial)
        refresh = f"rt-{user}-{serial}-{secrets.token_hex(4)}"
        self.refresh_tokens[refresh] = user
        token = {
            "access_token": f"at-{user}-{serial}-{secrets.token_hex(4)}",
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": scope,
        }
        self.issued.append(token)
        return token

    def access_tokens_of(self, user: str) -> list[str]:
        return [t["access_token"] for t in self.issued if t["access_token"].startswith(f"at-{user}-")]


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)
