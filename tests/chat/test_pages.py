"""The page views in-process: who gets the chat page, the sign-in page, the widget script."""

from __future__ import annotations

import pytest

from tests.factories import AgentFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_chat_page_sends_an_anonymous_visitor_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_the_chat_page_offers_the_members_team_agents_default_first(client, member, agent):
    other = AgentFactory(team=member.team, name="Another")
    AgentFactory(name="Not my team")
    client.force_login(member.user)

    response = client.get("/")

    assert response.status_code == 200
    assert [a.handle for a in response.context["agents"]] == [agent.handle, other.handle]
    page = response.content.decode()
    assert f'<option value="{agent.handle}" selected>' in page
    assert "Not my team" not in page
    assert '<meta name="csrf-token"' in page


def test_a_user_in_no_team_is_told_so_with_403(client):
    client.force_login(UserFactory())

    response = client.get("/")

    assert response.status_code == 403
    assert "belongs to no team" in response.content.decode()


def test_a_wrong_password_shows_the_sign_in_form_again_with_an_error(client, member):
    member.user.set_password("right")
    member.user.save()

    refused = client.post("/login/", {"username": member.user.username, "password": "wrong"})
    accepted = client.post("/login/", {"username": member.user.username, "password": "right"})

    assert refused.status_code == 200
    assert 'role="alert"' in refused.content.decode()
    assert accepted.status_code == 302
    assert accepted["Location"] == "/"


def test_widget_js_is_one_script_with_the_client_and_the_widget(client):
    response = client.get("/widget.js")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    script = response.content.decode()
    assert script.startswith("(function () {")
    assert "const GenieClient" in script
    assert script.index("const GenieClient") < script.index("const GenieWidget")
    assert client.post("/widget.js").status_code == 405


def test_a_signed_in_user_sent_back_to_the_sign_in_page_goes_to_the_chat(client, member):
    client.force_login(member.user)

    response = client.get("/login/?next=/login/")

    assert response.status_code == 302
    assert response["Location"] == "/"
