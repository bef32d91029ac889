"""A real webhook receiver on a loopback port, for the tool tests: it checks Genie's
signature as a team's server would, and records what it was sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Answers each signed call with ``{"echo": input}``; refuses a bad signature with 401.
    Records each call's body, its ``Authorization`` header (a connection's token) and its
    ``Idempotency-Key``."""

    def __init__(self) -> None:
        self.secret = ""
        self.calls: list[dict] = []
        self.authorizations: list[str | None] = []  # each signed call's Authorization header
        self.idempotency_keys: list[str | None] = []  # each signed call's Idempotency-Key header
        self.arrived = threading.Event()  # set when a signed call is in
        self.hold: threading.Event | None = None  # when set: each answer waits for it (a call in flight)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                stamp, _, digest = self.headers.get("Genie-Signature", "").partition(",v1=")
                timestamp = int(stamp.removeprefix("t=") or 0)
                expected = hmac.new(receiver.secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
                if not hmac.compare_digest(expected.hexdigest(), digest) or abs(time.time() - timestamp) > 300:
                    self.send_response(401)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.loads(raw)
                receiver.calls.append(body)
                receiver.authorizations.append(self.headers.get("Authorization"))
                receiver.idempotency_keys.append(self.headers.get("Idempotency-Key"))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                answer = json.dumps({"echo": body["input"]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the caller is gone (its worker was killed during the call)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"
