"""Every protocol's HTTP routes, in the order they must be tried (see ``genie.urls``).

The SSE GETs that the lean relay answers without Django are in ``protocols.routing``.
"""

from django.urls import include, path

urlpatterns = [
    # Seed 001, the headless "genies" API, under the API's own prefix.
    path("api/v1/", include("protocols.seed001.urls")),
    # The AI SDK's own default path for useChat.
    path("api/", include("protocols.aisdk.urls")),
    # Seed 003 under /api/v1/chat/, seed 002 at /chat (no prefix), as the documents write them.
    path("api/v1/chat/", include("protocols.seed003.urls")),
    path("", include("protocols.seed002.urls")),
    # OpenAI's Responses API, then the OpenAI-compatible endpoint (whose catch-all answers
    # every other /v1/ URL), where OpenAI clients look for them (base URL `<host>/v1`).
    path("v1/", include("protocols.responses.urls")),
    path("v1/", include("protocols.openai.urls")),
]
