from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from genie.exceptions import handler404 as json_not_found
from genie.views import ApiKeyViewSet, LivenessView, MetricsView, ReadinessView, healthz

api = [
    path("", include("chat.urls")),
    path("", include("feedback.urls")),
    path("", include("runs.urls")),
    # The documented APIs served as written (chat/adapters/), beside the canonical one.
    path("", include("chat.adapters.seed001")),
    path("api-keys", ApiKeyViewSet.as_view({"get": "list", "post": "create"}), name="api-key-list"),
    path(
        "api-keys/<uuid:uuid>", ApiKeyViewSet.as_view({"get": "retrieve", "delete": "destroy"}), name="api-key-detail"
    ),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularRedocView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v1/", include(api)),
    # The AI SDK's own default path for useChat (chat.adapters.aisdk; its resume GET is in genie.asgi).
    path("api/", include("chat.adapters.aisdk")),
    # The seed documents' own APIs, as written (chat/adapters/): seed 003 under /api/v1/chat/,
    # seed 002 at /chat (seed 001 is under /api/v1/genies/, in the API's URLs).
    path("api/v1/chat/", include("chat.adapters.seed003")),
    # Any other /api/ URL is the JSON 404, DEBUG or not (Django's own 404 page is HTML).
    re_path(r"^api/", json_not_found),
    path("", include("chat.adapters.seed002")),
    # The OpenAI-compatible endpoint, where OpenAI clients look for it (base URL `<host>/v1`).
    path("v1/", include("chat.adapters.openai")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # The web chat page, its sign-in, and the embeddable widget's script.
    path("", include("chat.pages")),
    path("livez", LivenessView.as_view(), name="livez"),
    path("readyz", ReadinessView.as_view(), name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]

handler400 = "genie.exceptions.handler400"
handler403 = "genie.exceptions.handler403"
handler404 = "genie.exceptions.handler404"
handler500 = "genie.exceptions.handler500"
