"""Domain errors of feedback."""

from __future__ import annotations

from genie.exceptions import GenieError


class NotAnAgentMessage(GenieError):
    default_code = "not_an_agent_message"
    default_detail = "Feedback can only be given on agent messages."
