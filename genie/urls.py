from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from genie.exceptions import handler404 as json_not_found
from genie.views import ApiKeyViewSet, healthz

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
    # Any other /api/ URL is the JSON 404, DEBUG or not (Django's own 404 page is HTML).
    re_path(r"^api/", json_not_found),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

handler400 = "genie.exceptions.handler400"
handler403 = "genie.exceptions.handler403"
handler404 = "genie.exceptions.handler404"
handler500 = "genie.exceptions.handler500"
