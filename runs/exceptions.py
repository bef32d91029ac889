"""Domain errors of runs, each with its status and stable code."""

from __future__ import annotations

from rest_framework import status

from genie.exceptions import Conflict, GenieError


class RunActive(Conflict):
    default_code = "run_active"
    default_detail = "A run is still active in this session; stop it or wait for its finish."


class RunRequiresAction(Conflict):
    """A synchronous reply whose turn paused for a person or the client (an approval, a
    client tool, a sign-in): the run waits; the details say for what and where to answer."""

    default_code = "requires_action"
    default_detail = "The turn waits for an answer (an approval, a client tool's result or a sign-in)."


class RunTimeout(GenieError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_code = "run_timeout"
    default_detail = "The run did not finish in time; it goes on: read its stream or poll it."


class ActionAlreadyAnswered(Conflict):
    default_code = "already_decided"
    default_detail = "This tool call was already decided."


class ConnectionAttemptClosed(Conflict):
    default_code = "connection_attempt_closed"
    default_detail = "This connection attempt is no longer waiting for the user (rejected or expired)."


class ConnectionLinkNotForThisBrowser(GenieError):
    """An auth link opened by someone other than whom it was issued to: a signed-in
    user's link in a browser signed in as someone else (``sign_in``: not signed in at all),
    or a publishable key visitor's link without that session's client secret. Nothing
    changes: the link still works for its requester."""

    default_code = "link_not_for_you"
    default_detail = "This authorization link was issued to someone else."

    def __init__(self, *, sign_in: bool = False) -> None:
        super().__init__()
        self.sign_in = sign_in


class InvalidConnectionState(GenieError):
    """A callback whose ``state`` is unknown, already used, or of an expired or settled attempt."""

    default_code = "invalid_state"
    default_detail = "This authorization link is not valid (unknown, already used or expired)."


class UnboundConnectionLink(GenieError):
    """A callback in a browser that did not open the link through Genie (it has no binding
    cookie, or another's): a link forwarded to someone else, or opened on another device."""

    default_code = "link_not_bound"
    default_detail = "This authorization was started in another browser."


class TooManyStreams(GenieError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_streams"
    default_detail = "This credential has as many streams open as GENIE_MAX_STREAMS_PER_KEY allows; close one first."
