from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from genie.views import healthz

api = [
    path("", include("chat.urls")),
    path("", include("feedback.urls")),
    path("", include("runs.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularRedocView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v1/", include(api)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

handler400 = "genie.exceptions.handler400"
handler403 = "genie.exceptions.handler403"
handler404 = "genie.exceptions.handler404"
handler500 = "genie.exceptions.handler500"
