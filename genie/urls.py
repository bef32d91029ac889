from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from genie.exceptions import handler404 as json_not_found
from genie.views import ApiKeyViewSet, LivenessView, MetricsView, ReadinessView, first_account, healthz

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
    # The documented APIs served as written, beside the canonical one (protocols/).
    path("", include("protocols.urls")),
    # Any other /api/ URL is the JSON 404, DEBUG or not (Django's own 404 page is HTML).
    re_path(r"^api/", json_not_found),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("setup/", first_account, name="setup"),  # the first run's account (the sign-in page offers it)
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
