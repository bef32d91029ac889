"""The web pages: the chat page at ``/`` for signed-in members (a template and plain
JavaScript over the REST API, its only backend) and the embeddable widget's script."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from chat.models import Agent
from genie.auth import caller_for_user

# ``/widget.js`` is one file for the host page: the stream reader the chat page uses too,
# then the widget, wrapped so that neither leaves a global behind but ``GenieWidget``.
WIDGET_PARTS = ("chat/client.js", "chat/widget.js")


@require_GET
@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page. A user outside every team has no sessions to show (the API would
    refuse it 403 ``no_team``): it gets a page that says so, with the same status."""
    caller = caller_for_user(request.user)
    if caller is None:
        return render(request, "chat/no_team.html", status=403)
    agents = Agent.objects.for_team(caller.team).live().order_by("-is_default", "name")
    return render(request, "chat/page.html", {"agents": agents, "team": caller.team})


@require_GET
def widget_script(request: HttpRequest) -> HttpResponse:
    """The widget as one classic script (no CORS needed to load it; its API calls are
    CORS requests that the publishable key's ``allowed_origins`` admit). Read per request
    (two small files) so an edit shows without a restart; browsers cache it 5 minutes."""
    sources = []
    for name in WIDGET_PARTS:
        path = finders.find(name)
        with open(path, encoding="utf-8") as source:
            sources.append(source.read())
    body = '(function () {\n"use strict";\n' + "\n".join(sources) + "\n})();\n"
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


class SignInView(auth_views.LoginView):
    """Django's sign-in; a signed-in user is sent on, and a ``next`` naming this page itself
    goes to the chat page (Django refuses that redirect loop with an error)."""

    redirect_authenticated_user = True

    def get_redirect_url(self) -> str:
        url = super().get_redirect_url()
        return "" if url == self.request.path else url


urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("widget.js", widget_script, name="widget-script"),
]
