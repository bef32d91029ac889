from django.urls import path

from feedback.views import FeedbackExportView, FeedbackViewSet, MessageFeedbackView

app_name = "feedback"

urlpatterns = [
    path("feedback", FeedbackViewSet.as_view({"get": "list"}), name="feedback-list"),
    path("feedback/export", FeedbackExportView.as_view(), name="feedback-export"),
    path(
        "sessions/<uuid:session_uuid>/messages/<uuid:message_uuid>/feedback",
        MessageFeedbackView.as_view(),
        name="message-feedback",
    ),
]
