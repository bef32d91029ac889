"""The first run: while no user exists, the sign-in page offers "Create the first account"
(``POST /setup/``, CSRF protected); that account is a staff superuser and a member of the
default team, signed in at once; once any user exists the offer is gone and ``/setup/`` is
404. Two first-run forms sent at once make one account."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from genie.models import Member
from genie.services import DEFAULT_TEAM_SLUG, FirstRunOver, create_first_user
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
ACCOUNT = {"username": "demo", "password1": PASSWORD, "password2": PASSWORD}


@pytest.fixture
def no_users(db):
    get_user_model().objects.all().delete()


def test_the_sign_in_page_offers_the_first_account_while_no_user_exists(client, no_users):
    page = client.get("/login/")

    html = page.content.decode()
    assert page.status_code == 200
    assert 'action="/setup/"' in html
    assert "Create the first account" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'action="/login/"' not in html  # nobody could sign in yet


def test_the_first_account_is_a_staff_superuser_of_the_default_team_and_signed_in(client, no_users):
    response = client.post("/setup/", ACCOUNT)

    user = get_user_model().objects.get()
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert (user.username, user.is_superuser, user.is_staff) == ("demo", True, True)
    assert user.check_password(PASSWORD)
    assert Member.objects.get(user=user).team.slug == DEFAULT_TEAM_SLUG
    assert client.get("/").status_code == 200  # signed in: the chat page, not the sign-in
    assert client.get("/admin/").status_code == 200


def test_once_a_user_exists_setup_is_404_and_the_sign_in_page_is_back(client, db):
    UserFactory(username="someone")

    response = client.post("/setup/", {**ACCOUNT, "username": "intruder"})
    page = client.get("/login/").content.decode()

    assert response.status_code == 404
    assert not get_user_model().objects.filter(username="intruder").exists()
    assert 'action="/setup/"' not in page
    assert 'action="/login/"' in page


def test_setup_needs_the_forms_csrf_token(no_users):
    browser = Client(enforce_csrf_checks=True)

    refused = browser.post("/setup/", ACCOUNT)
    token = browser.get("/login/").cookies["csrftoken"].value
    accepted = browser.post("/setup/", {**ACCOUNT, "csrfmiddlewaretoken": token})

    assert refused.status_code == 403
    assert accepted.status_code == 302
    assert get_user_model().objects.count() == 1


def test_a_bad_first_account_form_says_why_and_creates_nothing(client, no_users):
    response = client.post("/setup/", {**ACCOUNT, "password2": "something else"})

    assert response.status_code == 400
    assert "The two password fields didn\u2019t match." in response.content.decode()
    assert 'action="/setup/"' in response.content.decode()
    assert not get_user_model().objects.exists()


def test_setup_answers_post_only(client, no_users):
    assert client.get("/setup/").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_two_first_run_forms_sent_at_once_make_one_account():
    get_user_model().objects.all().delete()
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(username: str) -> None:
        start.wait()
        try:
            create_first_user(username=username, password=PASSWORD)
            outcomes.append("created")
        except FirstRunOver:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(name,)) for name in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created", "refused"]
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get().is_superuser
