"""Routes of the seed002 protocol."""

from django.urls import path

from protocols.seed002.views import ChatMessageViewSet, ChatViewSet

app_name = "seed002"

urlpatterns = [
    path("chat", ChatViewSet.as_view({"get": "list", "post": "create"}), name="chat-list"),
    path("chat/<str:chat_id>", ChatViewSet.as_view({"get": "retrieve", "delete": "destroy"}), name="chat-detail"),
    path(
        "chat/<str:chat_id>/message",
        ChatMessageViewSet.as_view({"get": "list", "post": "create"}),
        name="chat-message-list",
    ),
]
