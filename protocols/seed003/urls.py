"""Routes of the seed003 protocol."""

from django.urls import path

from protocols.seed003.views import CommandView, SessionCompactView, SessionContextUsageView, SessionMessageView

app_name = "seed003"

urlpatterns = [
    path("sessions/<str:session_id>/messages", SessionMessageView.as_view(), name="session-messages"),
    path("sessions/<str:session_id>/compact", SessionCompactView.as_view(), name="compact"),
    path("sessions/<str:session_id>/context-usage", SessionContextUsageView.as_view(), name="context-usage"),
    path("command", CommandView.as_view(), name="command"),
]
