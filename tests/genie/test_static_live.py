"""Under the real Daphne (as ``make run`` serves it) the admin's review pages come with
their stylesheets, and the API docs with their script, all served by this server."""

from __future__ import annotations

from contextlib import closing
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.factories import FeedbackFactory, UserFactory

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


class AssetLinks(HTMLParser):
    """The stylesheets and scripts a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.stylesheets: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "link" and attributes.get("rel") == "stylesheet" and attributes.get("href"):
            self.stylesheets.append(attributes["href"])
        elif tag == "script" and attributes.get("src"):
            self.scripts.append(attributes["src"])


def assets_of(page: httpx.Response) -> AssetLinks:
    links = AssetLinks()
    links.feed(page.text)
    return links


def staff_client(base_url: str) -> httpx.Client:
    """A browser-like client signed in to the admin through its login form (CSRF and all)."""
    user = UserFactory(is_staff=True, is_superuser=True)
    user.set_password("review-pass")
    user.save()
    client = httpx.Client(base_url=base_url, timeout=10)
    client.get("/admin/login/")
    signed_in = client.post(
        "/admin/login/?next=/admin/",
        data={"username": user.username, "password": "review-pass", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/admin/login/"},
    )
    assert signed_in.status_code == 302, signed_in.text
    return client


def test_the_admin_review_pages_load_their_stylesheets_from_this_server(live_server_url):
    feedback = FeedbackFactory(body="Too slow")
    with closing(staff_client(live_server_url)) as client:
        pages = [
            client.get(f"/admin/chat/session/{feedback.message.session_id}/conversation/"),
            client.get("/admin/feedback/feedback/ratings/"),
        ]
        for page in pages:
            assert page.status_code == 200
            stylesheets = assets_of(page).stylesheets
            assert "/static/admin/css/base.css" in stylesheets
            assert "/static/genie/admin-review.css" in stylesheets
            for href in stylesheets:
                css = client.get(href)
                assert css.status_code == 200, href
                assert css.headers["content-type"].startswith("text/css")


def test_the_api_docs_load_their_script_from_this_server_not_a_cdn(live_server_url):
    docs = httpx.get(f"{live_server_url}/api/v1/docs", timeout=10)

    assert docs.status_code == 200
    scripts = [urljoin(f"{live_server_url}/api/v1/docs", src) for src in assets_of(docs).scripts]
    assert scripts
    for script in scripts:
        assert urlsplit(script).netloc == urlsplit(live_server_url).netloc, script
        response = httpx.get(script, timeout=10)
        assert response.status_code == 200, script
        assert "javascript" in response.headers["content-type"]
