from django.urls import path

from chat.views import AgentViewSet, MessageViewSet, SessionViewSet

app_name = "chat"

urlpatterns = [
    path("agents", AgentViewSet.as_view({"get": "list", "post": "create"}), name="agent-list"),
    path(
        "agents/<slug:handle>/webhook-secret",
        AgentViewSet.as_view({"post": "rotate_webhook_secret"}),
        name="agent-webhook-secret",
    ),
    path(
        "agents/<slug:handle>",
        AgentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="agent-detail",
    ),
    path("sessions", SessionViewSet.as_view({"get": "list", "post": "create"}), name="session-list"),
    path(
        "sessions/<uuid:session_uuid>",
        SessionViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="session-detail",
    ),
    path(
        "sessions/<uuid:session_uuid>/messages",
        MessageViewSet.as_view({"get": "list", "post": "create"}),
        name="message-list",
    ),
    path(
        "sessions/<uuid:session_uuid>/messages/<uuid:message_uuid>",
        MessageViewSet.as_view({"get": "retrieve"}),
        name="message-detail",
    ),
]
