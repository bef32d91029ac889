"""Routes of the seed003 protocol."""

from django.urls import path

from protocols.seed003.views import CommandView, SessionContextViewSet, SessionMessageView

app_name = "seed003"

urlpatterns = [
    path("sessions/<str:session_id>/messages", SessionMessageView.as_view(), name="session-messages"),
    path("sessions/<str:session_id>/compact", SessionContextViewSet.as_view({"post": "compact"}), name="compact"),
    path(
        "sessions/<str:session_id>/context-usage",
        SessionContextViewSet.as_view({"get": "context_usage"}),
        name="context-usage",
    ),
    path("command", CommandView.as_view(), name="command"),
]
