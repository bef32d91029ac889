"""Routes of OpenAI's Responses API (under ``v1/``, before the openai package's catch-all).

``GET responses/{id}?stream=true`` is the relay's (``protocols.routing``); without
``stream`` it reaches ``ResponseDetailView`` here."""

from django.urls import path

from protocols.responses.views import (
    ResponseCancelView,
    ResponseDetailView,
    ResponseInputItemsView,
    ResponsesView,
)

app_name = "responses"

urlpatterns = [
    path("responses", ResponsesView.as_view(), name="create"),
    path("responses/<str:response_id>", ResponseDetailView.as_view(), name="detail"),
    path("responses/<str:response_id>/cancel", ResponseCancelView.as_view(), name="cancel"),
    path("responses/<str:response_id>/input_items", ResponseInputItemsView.as_view(), name="input-items"),
]
