"""Publishable keys list their origins; the API answers CORS for those origins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from genie.cors import forget_origins
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example"
DEV = "http://localhost:5173"
EVIL = "https://evil.example"
WIDGET_HEADERS = {"authorization", "content-type", "x-session-secret", "last-event-id", "idempotency-key"}


@pytest.fixture(autouse=True)
def _no_cached_preflights():
    """Keys made in a test's transaction never commit, so they never clear the cache."""
    forget_origins([SHOP, DEV, EVIL])
    yield
    forget_origins([SHOP, DEV, EVIL])


@pytest.fixture
def secret_key(team, agent) -> str:
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    return key


@pytest.fixture
def shop_key(team, agent) -> str:
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[SHOP])
    return key


def preflight(path: str = "/api/v1/sessions", origin: str = SHOP, method: str = "POST"):
    return APIClient().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,x-session-secret",
    )


def header_names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


# --- keys carry their origins ------------------------------------------------------------


def test_publishable_key_stores_its_origins_normalised(secret_key):
    client = bearer_client(secret_key)

    response = client.post(
        "/api/v1/api-keys",
        {"kind": "publishable", "name": "shop", "allowed_origins": ["HTTPS://Shop.Example", DEV, f"{SHOP}:443"]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["allowed_origins"] == [SHOP, DEV]
    assert AccessToken.objects.get(uuid=response.json()["uuid"]).allowed_origins == [SHOP, DEV]
    listed = client.get("/api/v1/api-keys").json()["results"]
    assert [key["allowed_origins"] for key in listed if key["kind"] == "publishable"] == [[SHOP, DEV]]


@pytest.mark.parametrize(
    "origin",
    [
        "https://shop.example/",
        "https://shop.example/widget",
        "https://shop.example?x=1",
        "shop.example",
        "ftp://shop.example",
        "https://*.shop.example",
        "null",
        "https://user@shop.example",
        "https://shop.example:99999",
        "",
        42,
    ],
)
def test_a_bad_origin_is_a_400(secret_key, origin):
    response = bearer_client(secret_key).post(
        "/api/v1/api-keys", {"kind": "publishable", "allowed_origins": [SHOP, origin]}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]["allowed_origins"]) == ["1"]  # the second origin, by index
    assert not AccessToken.objects.filter(kind=AccessToken.Kind.PUBLISHABLE).exists()


def test_a_secret_key_cannot_have_allowed_origins(secret_key):
    response = bearer_client(secret_key).post(
        "/api/v1/api-keys", {"kind": "secret", "allowed_origins": [SHOP]}, format="json"
    )

    assert response.status_code == 400
    assert "publishable" in response.json()["error"]["details"]["allowed_origins"][0]


def test_create_api_key_command_takes_allowed_origins(team, capsys):
    call_command(
        "create_api_key", "--team", team.slug, "--kind", "publishable", "--allowed-origin", "https://Shop.example"
    )
    call_command("create_api_key", "--team", team.slug, "--kind", "publishable", "--allowed-origin", DEV)

    key = capsys.readouterr().out.split()[0]
    assert AccessToken.objects.get(prefix=key[: AccessToken.LOOKUP_LENGTH]).allowed_origins == [SHOP]
    with pytest.raises(CommandError, match="trailing slash"):
        call_command("create_api_key", "--team", team.slug, "--kind", "publishable", "--allowed-origin", f"{SHOP}/")
    with pytest.raises(CommandError, match="publishable"):
        call_command("create_api_key", "--team", team.slug, "--kind", "secret", "--allowed-origin", SHOP)


def test_admin_stores_origins_normalised_and_lists_them(client, team):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    form = {"team": team.pk, "kind": "publishable", "name": "shop", "allowed_origins": '["https://SHOP.example"]'}

    added = client.post("/admin/genie/accesstoken/add/", form)
    refused = client.post("/admin/genie/accesstoken/add/", {**form, "allowed_origins": '["https://shop.example/"]'})

    assert added.status_code == 302
    assert AccessToken.objects.get(name="shop").allowed_origins == [SHOP]
    assert refused.status_code == 200
    assert b"trailing slash" in refused.content
    assert SHOP.encode() in client.get("/admin/genie/accesstoken/").content


# --- preflights --------------------------------------------------------------------------


def test_preflight_is_answered_for_an_origin_a_publishable_key_lists(shop_key):
    response = preflight()

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert header_names(response["Access-Control-Allow-Headers"]) >= WIDGET_HEADERS
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response
    assert "origin" in header_names(response["Vary"])


@pytest.mark.parametrize("state", ["unlisted", "revoked", "expired", "outside_api"])
def test_preflight_is_not_answered_otherwise(team, state):
    token, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[SHOP])
    origin, path = SHOP, "/api/v1/sessions"
    if state == "unlisted":
        origin = EVIL
    elif state == "revoked":
        token.revoke()
    elif state == "expired":
        AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        path = "/admin/login/"

    response = preflight(path=path, origin=origin)

    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Headers" not in response


def test_preflight_answer_is_cached(shop_key, django_assert_num_queries):
    preflight()

    with django_assert_num_queries(0):
        assert preflight()["Access-Control-Allow-Origin"] == SHOP


def test_a_new_key_is_answered_at_once(team, agent, django_capture_on_commit_callbacks):
    assert "Access-Control-Allow-Origin" not in preflight(origin=DEV)  # cached: not listed

    with django_capture_on_commit_callbacks(execute=True):
        create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[DEV])

    assert preflight(origin=DEV)["Access-Control-Allow-Origin"] == DEV


# --- actual requests ---------------------------------------------------------------------


def test_request_with_a_key_listing_its_origin_gets_cors_headers(shop_key):
    response = bearer_client(shop_key, HTTP_ORIGIN=SHOP).post(
        "/api/v1/sessions", {"text": "Hello!", "user_id": "visitor-1"}, format="json"
    )

    assert response.status_code == 201
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Credentials" not in response
    assert "origin" in header_names(response["Vary"])


def test_publishable_key_from_an_unlisted_origin_is_403(team, agent, shop_key):
    _, bare_key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    unlisted = bearer_client(shop_key, HTTP_ORIGIN=EVIL).post("/api/v1/sessions", {"text": "hi"}, format="json")
    none_listed = bearer_client(bare_key, HTTP_ORIGIN=SHOP).post("/api/v1/sessions", {"text": "hi"}, format="json")

    for response in (unlisted, none_listed):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response


def test_server_to_server_calls_send_no_origin_and_are_unaffected(shop_key):
    response = bearer_client(shop_key).post("/api/v1/sessions", {"text": "hi"}, format="json")

    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response


def test_other_credentials_get_no_cors_headers(shop_key, secret_key, personal_key):
    for key in (secret_key, personal_key):
        response = bearer_client(key, HTTP_ORIGIN=SHOP).get("/api/v1/sessions")

        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response


def test_an_invalid_key_gets_no_cors_headers(shop_key):
    response = bearer_client("pk_live_" + "x" * 40, HTTP_ORIGIN=SHOP).post("/api/v1/sessions", {"text": "hi"})

    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response


def test_seed_002s_chat_api_answers_cors_for_a_listed_origin(shop_key):
    asked = preflight("/chat")
    created = bearer_client(shop_key, HTTP_ORIGIN=SHOP).post("/chat", {"agentId": "", "userId": "v"}, format="json")
    elsewhere = preflight("/chatroom")

    assert asked["Access-Control-Allow-Origin"] == SHOP
    assert created.status_code == 400  # an answer the page may read, in seed 002's voice
    assert created["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Origin" not in elsewhere
