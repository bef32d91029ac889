"""Routes of the seed001 protocol."""

from django.urls import path

from protocols.seed001.views import (
    GENIE_RUN_STREAM_PATH,
    PREFIX,
    ConversationCreateView,
    ConversationEventsView,
    ConversationMessagesView,
    ConversationUploadView,
    GenieRunStreamView,
    RuntimeConnectionLinkView,
    RuntimeConnectionRejectView,
    SkillApprovalView,
)

app_name = "seed001"

urlpatterns = [
    path(f"{PREFIX}conversations", ConversationCreateView.as_view(), name="conversation-list"),
    path(f"{PREFIX}conversations/events", ConversationEventsView.as_view({"get": "list"}), name="conversation-events"),
    path(
        f"{PREFIX}conversations/<uuid:session_uuid>/messages",
        ConversationMessagesView.as_view({"get": "list", "post": "create"}),
        name="conversation-messages",
    ),
    path(
        f"{PREFIX}conversations/<uuid:session_uuid>/upload",
        ConversationUploadView.as_view({"post": "create"}),
        name="conversation-upload",
    ),
    path(
        f"{PREFIX}conversations/<uuid:session_uuid>/skill_approval/<str:call_id>",
        SkillApprovalView.as_view(),
        name="skill-approval",
    ),
    path(
        f"{PREFIX}runtime_connection/<str:attempt_id>/link",
        RuntimeConnectionLinkView.as_view(),
        name="runtime-connection-link",
    ),
    path(
        f"{PREFIX}runtime_connection/<str:attempt_id>/reject",
        RuntimeConnectionRejectView.as_view(),
        name="runtime-connection-reject",
    ),
    path(GENIE_RUN_STREAM_PATH, GenieRunStreamView.as_view(), name="genie-run"),
]
