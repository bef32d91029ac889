from django.urls import path

from chat.views import AgentProfileView, AgentViewSet, MessageViewSet, SessionViewSet, UploadViewSet

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
    path("agent-profile", AgentProfileView.as_view(), name="agent-profile"),
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
    path(
        "sessions/<uuid:session_uuid>/messages/<uuid:message_uuid>/regenerate",
        MessageViewSet.as_view({"post": "regenerate"}),
        name="message-regenerate",
    ),
    path(
        "sessions/<uuid:session_uuid>/messages/<uuid:message_uuid>/edit",
        MessageViewSet.as_view({"post": "edit"}),
        name="message-edit",
    ),
    path(
        "sessions/<uuid:session_uuid>/compact",
        SessionViewSet.as_view({"post": "compact"}),
        name="session-compact",
    ),
    path(
        "sessions/<uuid:session_uuid>/context-usage",
        SessionViewSet.as_view({"get": "context_usage"}),
        name="session-context-usage",
    ),
    path("sessions/<uuid:session_uuid>/uploads", UploadViewSet.as_view({"post": "create"}), name="upload-list"),
    path(
        "sessions/<uuid:session_uuid>/uploads/<uuid:file_id>",
        UploadViewSet.as_view({"get": "retrieve"}),
        name="upload-detail",
    ),
    path(
        "sessions/<uuid:session_uuid>/uploads/<uuid:file_id>/content",
        UploadViewSet.as_view({"get": "content"}),
        name="upload-content",
    ),
]
