"""A request's messages as a Genie turn, for the OpenAI-compatible endpoint and the Responses
API (which reads its input items as these messages): the conversation before the turn, the
turn's text, the client's own tool loop after it, and the stored session or paused run the
request goes on with (OpenAI clients resend the whole conversation)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from chat.models import Agent, Message, Session
from genie.auth import Caller
from protocols.openai.serializers import last_user_index
from runs.models import Run, ToolCall
from runs.options import ClientToolSpec, client_tool_names
from runs.providers import get_provider


def transcript_of(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Messages as Genie stores a conversation: user messages, and one agent message per
    turn (an assistant's messages around its tool calls joined, as a run's reply holds
    all its steps' text); tool results and instructions are not part of it."""
    transcript: list[tuple[str, str]] = []
    for message in messages:
        if message["role"] == "user":
            transcript.append((Message.SenderRole.USER, message["content"]))
        elif message["role"] == "assistant":
            if transcript and transcript[-1][0] == Message.SenderRole.AGENT:
                transcript[-1] = (Message.SenderRole.AGENT, transcript[-1][1] + message["content"])
            else:
                transcript.append((Message.SenderRole.AGENT, message["content"]))
    return [(role, text) for role, text in transcript if text.strip()]


@dataclass(frozen=True)
class Conversation:
    """A request's messages as a turn: the conversation before it (``earlier``), its user
    message (``text``), and the tool loop the client ran after it (``steps``: assistant
    tool calls and tool results, as the model reads them; ``steps_text``: their assistant
    text), whose last tool results (``answers``: call id → content) may answer a paused
    run's calls."""

    earlier: list[tuple[str, str]]
    text: str
    steps: tuple[dict[str, Any], ...]
    steps_text: str
    answers: dict[str, str]

    @classmethod
    def of(cls, messages: list[dict[str, Any]]) -> Conversation:
        turn = last_user_index(messages)
        tail = [m for m in messages[turn + 1 :] if m["role"] in ("assistant", "tool")]
        steps: list[dict[str, Any]] = []
        for message in tail:
            if message["role"] == "tool":
                steps.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]})
                continue
            step: dict[str, Any] = {"role": "assistant", "content": message["content"] or None}
            if message["tool_calls"]:
                step["tool_calls"] = [
                    {"id": call["id"], "type": "function", "function": dict(call["function"])}
                    for call in message["tool_calls"]
                ]
            steps.append(step)
        answers: dict[str, str] = {}
        for message in reversed(tail):
            if message["role"] != "tool":
                break
            answers[message["tool_call_id"]] = message["content"]
        return cls(
            earlier=transcript_of(messages[:turn]),
            text=messages[turn]["content"],
            steps=tuple(steps),
            steps_text="".join(m["content"] for m in tail if m["role"] == "assistant"),
            answers=dict(reversed(answers.items())),
        )


def stored_transcript(session: Session) -> list[tuple[str, str]]:
    """A session's conversation as ``transcript_of`` reads a request's (replaced replies
    left out)."""
    rows = session.messages.filter(replaced_by__isnull=True).order_by("created_at", "id")
    return [(role, text) for role, text in rows.values_list("sender_role", "text") if text.strip()]


# Sessions compared at most, most recent first, when a request's history names none.
MATCH_CANDIDATES = 20


def session_with_history(caller: Caller, agent: Agent, earlier: list[tuple[str, str]]) -> Session | None:
    """The caller's session with ``agent`` whose stored transcript is exactly ``earlier``
    and that runs no turn now (a stateless client resending the conversation goes on in
    it), or None."""
    users = [text for role, text in earlier if role == Message.SenderRole.USER]
    if not users:
        return None
    candidates = (
        Session.objects.reachable_by(caller)
        .filter(agent=agent, messages__sender_role=Message.SenderRole.USER, messages__text=users[-1])
        .exclude(runs__status__in=Run.ACTIVE_STATUSES)
        .distinct()
        .order_by("-updated_at")[:MATCH_CANDIDATES]
    )
    return next((session for session in candidates if stored_transcript(session) == earlier), None)


def answered_run(caller: Caller, agent: Agent, conversation: Conversation) -> Run | None:
    """The caller's run (with ``agent``) whose client tool calls the request's last tool
    results answer, or None (results of calls Genie never made: the client's own loop)."""
    if not conversation.answers:
        return None
    calls = list(
        ToolCall.objects.filter(
            call_id__in=conversation.answers,
            run__session__in=Session.objects.reachable_by(caller),
            run__session__agent=agent,
        ).select_related("run__session__agent", "run__agent_message")
    )
    if not calls:
        return None
    if len({call.run_id for call in calls}) > 1 or len(calls) != len(conversation.answers):
        raise serializers.ValidationError(
            {"messages": ["The last tool results must answer the calls of one reply, and only those."]},
            code="invalid_value",
        )
    run = calls[0].run
    mine = client_tool_names(run.client_tools)
    waiting = run.tool_calls.filter(status=ToolCall.Status.AWAITING_RESULT, tool_name__in=mine)
    unanswered = sorted(set(waiting.values_list("call_id", flat=True)) - set(conversation.answers))
    if unanswered:
        raise serializers.ValidationError(
            {"messages": [f"Tool results are missing for: {', '.join(unanswered)}."]}, code="invalid_value"
        )
    return run


def tool_output(content: str) -> Any:
    """A ``tool`` message's content as the call's output: its JSON value, else the text."""
    try:
        return json.loads(content)
    except ValueError:
        return content


def offered_tools(agent: Agent, tools: list[ClientToolSpec], *, name_at: tuple[str, ...]) -> tuple[ClientToolSpec, ...]:
    """The request's own tools, to be offered beside the agent's: refused for an agent
    whose model calls no tools, and for a name one of the agent's tools has (the error
    names the tool's ``name`` at ``name_at`` in the request's tool)."""
    if tools and not get_provider(agent.provider).supports_tools:
        raise serializers.ValidationError(
            {"tools": [f"The agent `{agent.handle}`'s model ({agent.provider}) does not call tools."]},
            code="unsupported_parameter",
        )
    own = {tool.get("name") for tool in agent.tools}
    for index, tool in enumerate(tools):
        if tool.name in own:
            error: Any = ["The agent has a tool of this name."]
            for name in reversed(name_at):
                error = {name: error}
            raise serializers.ValidationError({"tools": {str(index): error}}, code="invalid_value")
    return tuple(tools)
