"""Routes of the openai protocol."""

from django.urls import path, re_path

from protocols.openai.views import AgentModelViewSet, ChatCompletionView, unknown_url

app_name = "openai"

urlpatterns = [
    path("chat/completions", ChatCompletionView.as_view(), name="chat-completions"),
    path("models", AgentModelViewSet.as_view({"get": "list"}), name="model-list"),
    path("models/<str:model>", AgentModelViewSet.as_view({"get": "retrieve"}), name="model-detail"),
    re_path(r"^.*$", unknown_url),
]
