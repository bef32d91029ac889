from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from genie.exceptions import handler404 as json_not_found
from genie.views import ApiKeyViewSet, healthz

api = [
    path("", include("chat.urls")),
    path("", include("feedback.urls")),
    path("", include("runs.urls")),
    path("api-keys", ApiKeyViewSet.as_view({"get": "list", "post": "create"}), name="api-key-list"),
    path(
        "api-keys/<uuid:uuid>", ApiKeyViewSet.as_view({"get": "retrieve", "delete": "destroy"}), name="api-key-detail"
    ),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularRedocView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v1/", include(api)),
    # The seed documents' own APIs, as written (chat/adapters/): seed 003 under /api/v1/chat/,
    # seed 002 at /chat.
    path("api/v1/chat/", include("chat.adapters.seed003")),
    # Any other /api/ URL is the JSON 404, DEBUG or not (Django's own 404 page is HTML).
    re_path(r"^api/", json_not_found),
    path("", include("chat.adapters.seed002")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

handler400 = "genie.exceptions.handler400"
handler403 = "genie.exceptions.handler403"
handler404 = "genie.exceptions.handler404"
handler500 = "genie.exceptions.handler500"
