"""Routes of the aisdk protocol."""

from django.urls import path

from protocols.aisdk.views import AISDKChatView, ChatMessagesView, ChatStopView

urlpatterns = [
    path("chat", AISDKChatView.as_view(), name="ai-sdk-chat"),
    path("chat/<str:chat_id>/messages", ChatMessagesView.as_view(), name="ai-sdk-chat-messages"),
    path("chat/<str:chat_id>/stop", ChatStopView.as_view(), name="ai-sdk-chat-stop"),
]
