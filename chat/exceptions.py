"""Domain errors of agents and sessions."""

from __future__ import annotations

from rest_framework import status

from genie.exceptions import Conflict, GenieError


class AgentInUse(Conflict):
    default_code = "agent_in_use"
    default_detail = "The agent has sessions; pass ?force=true to archive it instead."


class FileTooLarge(GenieError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "file_too_large"
    default_detail = "The file is larger than GENIE_MAX_UPLOAD_BYTES."


class UnsupportedFileType(GenieError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_file_type"
    default_detail = "Only text, JSON, PDF and PNG, JPEG, WebP or GIF images can be uploaded."


class NoUserMessage(GenieError):
    default_code = "no_user_message"
    default_detail = "The messages end with no user message to answer."


class ChatHistoryMismatch(Conflict):
    default_code = "history_mismatch"
    default_detail = "The messages contradict the chat's stored history."


class ChatIdTaken(Conflict):
    default_code = "chat_id_taken"
    default_detail = "This chat id names a session this request cannot reach."


class NoToolAnswer(GenieError):
    default_code = "no_tool_answer"
    default_detail = "The assistant message answers none of its pending tool calls."


class ModelNotFound(GenieError):
    """An OpenAI-compatible request naming no agent of the caller's (``model`` is an agent's handle)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "model_not_found"
    default_detail = "The model does not exist or you do not have access to it."


class SessionNotFound(GenieError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "session_not_found"
    default_detail = "No such session (header Genie-Session), or not yours."


class TurnFailed(GenieError):
    """A turn that ended ``failed``, answered synchronously (its error names why)."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "turn_failed"
    default_detail = "The agent's turn failed."


class NotAReply(GenieError):
    default_code = "not_a_reply"
    default_detail = "Only an agent message can be regenerated."


class NotTheLastReply(Conflict):
    default_code = "not_the_last_reply"
    default_detail = "Only the chat's last reply can be regenerated; edit the message before it instead."


class NotAUserMessage(GenieError):
    default_code = "not_a_user_message"
    default_detail = "Only a user message can be edited."


class MessageReplaced(Conflict):
    default_code = "message_replaced"
    default_detail = "This message was already replaced (edited or regenerated); act on the one that replaced it."


class MessageCompacted(Conflict):
    default_code = "message_compacted"
    default_detail = "This message is summarised by a compaction; only the messages after the summary can be edited."
