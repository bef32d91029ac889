"""The egress guard and the provider key rule, against real listeners on loopback: what
the audit found (the operator key sent to a team's listener; loopback, link-local and
ftp base URLs accepted and called) must not happen."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest

from genie.egress import EgressRefused, checked_address, guarded_client
from runs.providers import ProviderError, ProviderRequest, get_provider
from tests.factories import AgentFactory

OPERATOR_KEY = "sk-operator-secret-key"


class Listener:
    """A loopback HTTP server that records each request and answers like an
    OpenAI-compatible endpoint (or with a redirect to ``redirect_to``)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.redirect_to = ""
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                listener.requests.append({"path": self.path, "headers": headers, "body": body})
                if listener.redirect_to:
                    self.send_response(307)
                    self.send_header("location", listener.redirect_to)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
                payload = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture
def no_allowlist(settings):
    settings.GENIE_EGRESS_ALLOW = ""
    return settings


def resolving_to(address: str):
    """The guard's DNS answering ``address`` for every name (an answer we choose; the
    connection itself resolves nothing: it goes to the checked address)."""
    return mock.patch("genie.egress.resolve", return_value=[ipaddress.ip_address(address)])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost/v1",
        "http://[::1]/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/v1",
        "http://192.168.0.10/v1",
        "http://100.64.0.1/v1",
        "http://0.0.0.0/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "http://[2002:7f00:1::]/v1",  # 6to4 around 127.0.0.1
        "http://[fe80::1]/v1",
        "http://224.0.0.1/v1",
        "ftp://example.com/v1",
        "file:///etc/passwd",
    ],
)
def test_non_public_destinations_are_refused(no_allowlist, url):
    with pytest.raises(EgressRefused):
        checked_address(url)


def test_a_public_address_passes_and_the_operator_allowlist_opens_hosts_and_networks(no_allowlist):
    assert str(checked_address("https://93.184.215.14/v1")) == "93.184.215.14"
    no_allowlist.GENIE_EGRESS_ALLOW = "vllm.internal, 10.0.0.0/8"
    with resolving_to("10.20.30.40"):
        assert str(checked_address("http://vllm.internal:8000/v1")) == "10.20.30.40"
        assert str(checked_address("http://other.internal/v1")) == "10.20.30.40"  # by its network
    with resolving_to("192.168.1.1"), pytest.raises(EgressRefused):
        checked_address("http://elsewhere.internal/v1")


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://169.254.169.254/", "ftp://example.com/"])
def test_saving_an_agent_with_a_non_public_base_url_is_400(no_allowlist, secret_api, url):
    response = secret_api.post(
        "/api/v1/agents",
        {"handle": "probe", "name": "Probe", "provider": "openai", "model": "m", "base_url": url},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "base_url" in response.json()["error"]["details"]


def test_the_call_time_check_refuses_a_host_that_now_resolves_inside(no_allowlist, listener):
    """DNS rebinding: the name was public when the agent was saved; now it answers loopback."""
    port = listener.server.server_address[1]
    request = ProviderRequest(
        model="m", messages=[], temperature=0, max_tokens=5, base_url=f"http://rebind.example:{port}/v1"
    )

    with resolving_to("127.0.0.1"), pytest.raises(ProviderError) as refused:
        list(get_provider("openai").stream(request))

    assert refused.value.code == "egress_refused"
    assert refused.value.transient is False
    assert listener.requests == []


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(no_allowlist, listener):
    no_allowlist.GENIE_EGRESS_ALLOW = "127.0.0.0/8"
    port = listener.server.server_address[1]

    with resolving_to("127.0.0.1"), guarded_client(timeout=5) as client:
        client.post(f"http://models.example:{port}/v1/chat/completions", json={})

    assert listener.requests[0]["headers"]["host"] == f"models.example:{port}"


def test_a_redirect_is_checked_again(no_allowlist, listener):
    no_allowlist.GENIE_EGRESS_ALLOW = "127.0.0.1"
    listener.redirect_to = "http://169.254.169.254/latest/meta-data"

    with guarded_client(timeout=5, follow_redirects=True) as client, pytest.raises(EgressRefused):
        client.post(f"{listener.url}/chat/completions", json={})

    assert len(listener.requests) == 1


def test_the_operator_key_goes_only_to_the_operator_base_url(listener, settings):
    settings.GENIE_OPENAI_API_KEY = OPERATOR_KEY
    settings.GENIE_OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # the operator's endpoint (not this listener)
    team_request = ProviderRequest(model="m", messages=[], temperature=0, max_tokens=5, base_url=listener.url)

    list(get_provider("openai").stream(team_request))
    settings.GENIE_OPENAI_BASE_URL = listener.url
    operator_request = ProviderRequest(model="m", messages=[], temperature=0, max_tokens=5)
    list(get_provider("openai").stream(operator_request))

    team_call, operator_call = listener.requests
    assert OPERATOR_KEY not in json.dumps(team_call["headers"])
    assert operator_call["headers"]["authorization"] == f"Bearer {OPERATOR_KEY}"


@pytest.mark.django_db
def test_changing_the_base_url_clears_the_stored_key(secret_api, team):
    agent = AgentFactory(team=team, handle="remote", base_url="https://models.example/v1", api_key="sk-team-key")

    moved = secret_api.patch("/api/v1/agents/remote", {"base_url": "https://other.example/v1"}, format="json")
    agent.refresh_from_db()
    rekeyed = secret_api.patch(
        "/api/v1/agents/remote", {"base_url": "https://third.example/v1", "api_key": "sk-new"}, format="json"
    )

    assert moved.status_code == 200
    assert moved.json()["has_api_key"] is False
    assert agent.api_key == ""
    assert rekeyed.json()["has_api_key"] is True


def test_a_refused_destination_is_never_connected_to(no_allowlist, listener):
    with guarded_client(timeout=1) as client, pytest.raises(EgressRefused):
        client.post(f"{listener.url}/chat/completions", json={})

    assert listener.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "https://ex\u00adample.com/hook",
        "https://exa\u200bmple.com/hook",
        "https://example.com/\x7f",
        "https://xn--zz.com/",
    ],
)
def test_a_url_the_http_clients_cannot_send_is_refused_at_save(secret_api, url):
    # Issue 26, finding 13: these passed the save-time check and failed every call.
    tool = {"name": "hook", "kind": "webhook", "url": url}

    tools = secret_api.post(
        "/api/v1/agents", {"handle": "a", "name": "A", "model": "m", "tools": [tool]}, format="json"
    )
    base = secret_api.post("/api/v1/agents", {"handle": "b", "name": "B", "model": "m", "base_url": url}, format="json")

    assert tools.status_code == 400
    assert "cannot be requested" in tools.json()["error"]["details"]["tools"]["0"]["url"][0]
    assert base.status_code == 400
    assert "base_url" in base.json()["error"]["details"]
