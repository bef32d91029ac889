from django.urls import path

from feedback.views import MessageFeedbackView

app_name = "feedback"

urlpatterns = [
    path(
        "sessions/<uuid:session_uuid>/messages/<uuid:message_uuid>/feedback",
        MessageFeedbackView.as_view(),
        name="message-feedback",
    ),
]
