"""Wire formats of the one relay.

The relay (``runs.sse``) reads a session's stored event log (Redis, then PostgreSQL) with
one set of rules for order, resume, gaps and backpressure; a ``StreamFormat`` only says how
that log is written on the wire for one protocol. Every protocol therefore gets the same
durability and resume, and none copies the relay. A view names its format by class
(``StreamApp(Seed001Format)``, ``hand_off(wire=UIMessageFormat())``); a format maps the
event vocabulary (``runs.vocabulary``) to bytes and nothing else.
"""

from __future__ import annotations

from runs.formats.ai_sdk_chat import AISDKChatFormat
from runs.formats.base import StreamFormat
from runs.formats.openai import ChatCompletionChunkFormat
from runs.formats.responses import ResponsesFormat
from runs.formats.seed001 import Seed001Format
from runs.formats.seed003 import Seed003Format
from runs.formats.ui_message import UIMessageFormat

__all__ = [
    "AISDKChatFormat",
    "ChatCompletionChunkFormat",
    "ResponsesFormat",
    "Seed001Format",
    "Seed003Format",
    "StreamFormat",
    "UIMessageFormat",
]
