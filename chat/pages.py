"""The web pages: the chat page at ``/`` for signed-in members (a template and plain
JavaScript over the REST API, its only backend) and the embeddable widget's script."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from chat.models import Agent
from chat.serializers import AgentProfileSerializer
from genie.auth import caller_for_user
from genie.forms import FirstAccountForm
from genie.throttles import auth_failure_wait, record_auth_failure

# ``/widget.js`` is one file for the host page: the stream reader the chat page uses too,
# marked (the Markdown lexer), then the widget, wrapped so that none leaves a global behind
# but ``GenieWidget``.
WIDGET_PARTS = ("chat/client.js", "chat/vendor/marked.umd.js", "chat/widget.js")
# marked's UMD header registers it with a host page's AMD loader or as a global ``marked``:
# given a CommonJS ``module`` of its own, it fills that instead and touches neither.
MODULE_SCOPE = (
    "const marked = (function () {{\nconst module = {{ exports: {{}} }};\nconst exports = module.exports;\n"
    "{source}\nreturn module.exports;\n}})();"
)


@require_GET
@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page. A user outside every team has no sessions to show (the API would
    refuse it 403 ``no_team``): it gets a page that says so, with the same status."""
    caller = caller_for_user(request.user)
    if caller is None:
        return render(request, "chat/no_team.html", status=403)
    agents = list(Agent.objects.for_team(caller.team).live().order_by("-is_default", "name"))
    # What an empty chat shows of each agent: JSON in the page (json_script escapes it).
    profiles = [{**AgentProfileSerializer(agent).data, "is_default": agent.is_default} for agent in agents]
    return render(request, "chat/page.html", {"agents": agents, "profiles": profiles, "team": caller.team})


@require_GET
def widget_script(request: HttpRequest) -> HttpResponse:
    """The widget as one classic script (no CORS needed to load it; its API calls are
    CORS requests that the publishable key's ``allowed_origins`` admit). Read per request
    (two small files) so an edit shows without a restart; browsers cache it 5 minutes."""
    sources = []
    for name in WIDGET_PARTS:
        path = finders.find(name)
        with open(path, encoding="utf-8") as source:
            text = source.read()
        sources.append(MODULE_SCOPE.format(source=text) if name.endswith(".umd.js") else text)
    body = '(function () {\n"use strict";\n' + "\n".join(sources) + "\n})();\n"
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


class SignInView(auth_views.LoginView):
    """Django's sign-in; a signed-in user is sent on, and a ``next`` naming this page itself
    goes to the chat page (Django refuses that redirect loop with an error)."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """While no user exists (a fresh install), the page offers the first account instead."""
        context = super().get_context_data(**kwargs)
        if not get_user_model().objects.exists():
            context["setup_form"] = FirstAccountForm()
        return context

    def get_redirect_url(self) -> str:
        url = super().get_redirect_url()
        return "" if url == self.request.path else url

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Too many failed sign-ins from this client (GENIE_RATE_AUTH_FAILURES): 429, the
        password not even checked, until the window has passed."""
        if (wait := auth_failure_wait(request)) is not None:
            seconds = math.ceil(wait)
            response = self.render_to_response(self.get_context_data(retry_after=seconds), status=429)
            response["Retry-After"] = str(seconds)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        record_auth_failure(self.request)
        return super().form_invalid(form)


urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("login/", SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("widget.js", widget_script, name="widget-script"),
]
