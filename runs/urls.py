from django.urls import path

from runs.views import (
    ConnectionLinkView,
    ConnectionProviderViewSet,
    ConnectionRejectView,
    ConnectionViewSet,
    RunViewSet,
    SessionEventsView,
    SessionStopView,
    StreamOutsideAsgiView,
    ToolCallApprovalView,
    ToolCallResultView,
    connection_authorize,
    connection_callback,
)

app_name = "runs"

# The two stream paths are routed to runs.sse by genie.asgi before Django sees them.
SESSION_STREAM_PATH = "sessions/<uuid:session_uuid>/stream"
RUN_STREAM_PATH = "sessions/<uuid:session_uuid>/runs/<uuid:run_uuid>/stream"

urlpatterns = [
    path(SESSION_STREAM_PATH, StreamOutsideAsgiView.as_view(), name="session-stream"),
    path(RUN_STREAM_PATH, StreamOutsideAsgiView.as_view(), name="run-stream"),
    path("sessions/<uuid:session_uuid>/stream/stop", SessionStopView.as_view(), name="session-stop"),
    path("sessions/<uuid:session_uuid>/runs", RunViewSet.as_view({"get": "list"}), name="run-list"),
    path(
        "sessions/<uuid:session_uuid>/runs/<uuid:run_uuid>", RunViewSet.as_view({"get": "retrieve"}), name="run-detail"
    ),
    path(
        "sessions/<uuid:session_uuid>/tool-calls/<str:call_id>/approval",
        ToolCallApprovalView.as_view(),
        name="tool-call-approval",
    ),
    path(
        "sessions/<uuid:session_uuid>/tool-calls/<str:call_id>/result",
        ToolCallResultView.as_view(),
        name="tool-call-result",
    ),
    path("sessions/<uuid:session_uuid>/events", SessionEventsView.as_view({"get": "list"}), name="session-events"),
    path(
        "connection-providers",
        ConnectionProviderViewSet.as_view({"get": "list", "post": "create"}),
        name="connection-provider-list",
    ),
    path(
        "connection-providers/<slug:slug>",
        ConnectionProviderViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}
        ),
        name="connection-provider-detail",
    ),
    path("connections", ConnectionViewSet.as_view({"get": "list"}), name="connection-list"),
    path("connections/callback", connection_callback, name="connection-callback"),
    path("connections/authorize", connection_authorize, name="connection-authorize"),
    path("connections/<uuid:uuid>", ConnectionViewSet.as_view({"delete": "destroy"}), name="connection-detail"),
    path("connections/<uuid:attempt_id>/link", ConnectionLinkView.as_view(), name="connection-link"),
    path("connections/<uuid:attempt_id>/reject", ConnectionRejectView.as_view(), name="connection-reject"),
]
