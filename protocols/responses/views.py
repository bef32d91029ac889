"""OpenAI's Responses API: ``POST /v1/responses``, ``GET /v1/responses/{id}`` (with
``?stream=true&starting_after=N``: its stream, resumed), ``POST /v1/responses/{id}/cancel`` and
``GET /v1/responses/{id}/input_items``, in OpenAI's shapes and errors.

A response is one run: its id is ``resp_`` + the run's uuid hex. A request without
``previous_response_id`` opens a session (its earlier input messages become the session's
earlier turns); with it, the request continues that response's session: a user message is the
next turn; ``function_call_output`` and ``mcp_approval_response`` items answer the calls the
response waits on (through the same tool-call services as Genie's own API), and that same
response (the same run) goes on. The stream is the relay's, in ``runs.formats.responses``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.exceptions import TurnFailed
from chat.models import Agent, Message
from genie.auth import Caller
from genie.exceptions import GenieError
from genie.idempotency import IdempotentRequest
from genie.schema import IDEMPOTENCY_KEY
from protocols.base import ProtocolView, find_run, pick_agent
from protocols.openai.conversation import Conversation, answered_run, offered_tools, session_with_history, tool_output
from protocols.openai.errors import COMMON_OPENAI_ERRORS, model_not_found, openai_error, openai_error_response
from protocols.responses.serializers import (
    InputItem,
    InputItemsQuerySerializer,
    ResponseRequestSerializer,
    parse_response_id,
)
from runs import services as run_services
from runs.events import pause_point, read_run_log
from runs.exceptions import RunTimeout
from runs.formats.responses import (
    ResponseHead,
    ResponsesFormat,
    ResponseState,
    response_id,
    responses_usage,
    resume_point,
)
from runs.handoff import answer_turn
from runs.models import Run, ToolCall
from runs.options import ClientSettings, ClientToolSpec, TurnOptions, client_tool_names
from runs.services import ToolAnswer, Turn
from runs.sse import StreamApp, StreamPlan, StreamRefusal, plan_stream
from runs.titles import fallback_title
from runs.waiting import stop_and_wait

SESSION_HEADER = "Genie-Session"

STATUSES = {
    Run.Status.QUEUED: "queued",
    Run.Status.RUNNING: "in_progress",
    Run.Status.REQUIRES_ACTION: "completed",  # as OpenAI completes a response with calls for the client
    Run.Status.SUCCEEDED: "completed",
    Run.Status.FAILED: "failed",
    Run.Status.STOPPED: "cancelled",
}
# The tool-call status each answer item needs.
ANSWERS = {
    "function_call_output": ToolCall.Status.AWAITING_RESULT,
    "mcp_approval_response": ToolCall.Status.PENDING_APPROVAL,
}


class ResponseNotFound(GenieError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "response_not_found"
    default_detail = "No such response."


def not_found(value: str, param: str | None = None) -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{value}' not found.", details={"param": param})


def find_response(caller: Caller, value: str, *, param: str | None = None) -> Run:
    """The run a response id names, among those the caller reaches: another caller's is as
    unknown as a made-up one (404 ``response_not_found``)."""
    return find_run(caller, parse_response_id(value), missing=not_found(value, param))


# --- the response object -------------------------------------------------------------


def head_of(run: Run) -> ResponseHead:
    """What a response says beside its events, from its run: the agent, the turn's
    metadata, the run before it, and what the client asked of it (``Run.client_settings``,
    ``Run.client_tools``, echoed in OpenAI's shapes). One query (the run before it)."""
    session = run.session
    before = session.runs.turns().filter(created_at__lt=run.created_at).order_by("-created_at", "-id").first()
    agent = session.agent
    asked = ClientSettings.from_dict(run.client_settings)
    return ResponseHead(
        id=response_id(str(run.uuid)),
        created_at=int(run.created_at.timestamp()),
        model=agent.handle,
        instructions="\n\n".join(asked.instructions) or None,
        metadata=dict(run.user_message.metadata or {}),
        previous_response_id=response_id(str(before.uuid)) if before is not None else None,
        temperature=asked.temperature,
        top_p=asked.top_p,
        max_output_tokens=asked.max_tokens,
        tools=[
            {
                "type": "function",
                "name": tool["name"],
                "description": tool.get("description") or None,
                "parameters": tool.get("input_schema"),
                "strict": False,
            }
            for tool in run.client_tools
        ],
        tool_choice=tool_choice_echo(asked.tool_choice),
        text={"format": text_format_echo(asked.response_format)},
        user=session.user_id or None,
        client_tools=client_tool_names(run.client_tools),
        mcp_servers=frozenset(tool["name"] for tool in agent.tools or [] if tool.get("kind") == "mcp"),
    )


def tool_choice_echo(value: Any) -> Any:
    if isinstance(value, dict):
        return {"type": "function", "name": value["function"]["name"]}
    return value or "auto"


def text_format_echo(response_format: dict[str, Any] | None) -> dict[str, Any]:
    if not response_format:
        return {"type": "text"}
    if response_format["type"] != "json_schema":
        return {"type": response_format["type"]}
    spec = response_format["json_schema"]
    return {"type": "json_schema", "name": spec["name"], "schema": spec.get("schema", {}), "strict": spec.get("strict")}


def answered_calls(run: Run) -> set[str]:
    return set(run.tool_calls.exclude(status__in=ToolCall.OPEN_STATUSES).values_list("call_id", flat=True))


def state_of(run: Run, *, until: int | None = None, answering: set[str] | None = None) -> ResponseState:
    """The response as the run's event log (PostgreSQL, then Redis) describes it, up to
    the event ``until`` when given; ``answering``: calls being answered now (their pause
    does not end it)."""
    state = ResponseState(head_of(run), answered=answered_calls(run) | (answering or set()))
    for event in read_run_log(run):
        if until is not None and event.seq > until:
            break
        state.read(event.seq, event.type, event.data)
    return state


def response_body(run: Run) -> dict[str, Any]:
    """The response object of ``run`` now: its output from the event log, its status,
    usage and error from the run row (the authority)."""
    state = state_of(run)
    if not state.output and run.agent_message.text:  # its events are past their retention
        state.output.append(
            {
                "id": f"msg_{run.uuid.hex}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": run.agent_message.text, "annotations": []}],
            }
        )
    response_status = STATUSES[run.status]
    if run.status == Run.Status.SUCCEEDED and run.agent_message.status == Message.Status.INCOMPLETE:
        response_status = "incomplete"
        state.incomplete_details = {"reason": "max_output_tokens"}
    if run.status == Run.Status.FAILED:
        state.error = {"code": "server_error", "message": run.error_message or "The agent's turn failed."}
    if run.is_finished:
        state.usage = responses_usage({"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens})
    elif run.status == Run.Status.REQUIRES_ACTION:
        state.usage = responses_usage(run.state.get("usage"))
    return state.snapshot(response_status)


def session_headers(request: Request, turn: Turn) -> dict[str, str]:
    headers = {SESSION_HEADER: str(turn.session.uuid)}
    if turn.client_secret:
        headers["Genie-Client-Secret"] = turn.client_secret
    return headers


RESPONSE = {
    "type": "object",
    "description": "OpenAI's response object.",
    "properties": {
        "id": {"type": "string", "example": "resp_0f8e…"},
        "object": {"type": "string", "enum": ["response"]},
        "created_at": {"type": "integer"},
        "status": {
            "type": "string",
            "enum": ["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"],
        },
        "model": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object", "nullable": True},
        "error": {"type": "object", "nullable": True},
        "incomplete_details": {"type": "object", "nullable": True},
        "metadata": {"type": "object"},
        "previous_response_id": {"type": "string", "nullable": True},
    },
    "required": ["id", "object", "created_at", "status", "model", "output"],
}
EVENT_STREAM = {
    "type": "string",
    "description": "`event: <type>` + `data: {type, sequence_number, …}`: response.created, response.in_progress, "
    "output items, text deltas, function call arguments, then response.completed (or .incomplete / .failed).",
}


RESPONSE_NOT_FOUND = openai_error_response("`response_not_found`.")
# The answer of a view on one response (its detail, its cancel).
THE_RESPONSE = {
    200: OpenApiResponse(RESPONSE, description="The response."),
    404: RESPONSE_NOT_FOUND,
    **COMMON_OPENAI_ERRORS,
}


class ResponsesView(ProtocolView, APIView):
    """``POST /v1/responses``: one turn (or the continuation of a paused response) of the
    agent named by ``model``."""

    error_voice = staticmethod(openai_error)
    json_always = True  # JSON, or the relay's stream

    @extend_schema(
        operation_id="responses_create",
        request=ResponseRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            (200, "application/json"): OpenApiResponse(RESPONSE, description="The response (or, background, queued)."),
            (200, "text/event-stream"): OpenApiResponse(EVENT_STREAM, description="`stream: true`."),
            400: openai_error_response("`invalid_value`, `unknown_parameter`, `unsupported_parameter`; `param`."),
            404: openai_error_response("`model_not_found`; `response_not_found` (`previous_response_id`)."),
            409: openai_error_response("`run_active`: the session's previous response is still going."),
            502: openai_error_response("`turn_failed`: the run failed (without `stream` or `background`)."),
            504: openai_error_response("`run_timeout`: the response goes on; retrieve it later."),
            **COMMON_OPENAI_ERRORS,
        },
    )
    def post(self, request: Request) -> Response | HttpResponse:
        data = ResponseRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        caller: Caller = request.auth
        agent = pick_agent(caller, body["model"], missing=model_not_found(body["model"]))
        previous = None
        if body["previous_response_id"] is not None:
            previous = find_response(caller, body["previous_response_id"], param="previous_response_id")
            if previous.session.agent_id != agent.pk:
                raise serializers.ValidationError(
                    {"model": [f"The previous response is of the model `{previous.session.agent.handle}`."]},
                    code="invalid_value",
                )
        items: list[InputItem] = body["input"]
        if previous is not None and any(item.is_answer for item in items):
            return self.answer(request, body, previous, items)
        return self.new_turn(request, body, agent, previous, items)

    # --- a new turn ---------------------------------------------------------------------

    def new_turn(
        self, request: Request, body: dict[str, Any], agent: Agent, previous: Run | None, items: list[InputItem]
    ) -> Response | HttpResponse:
        """A user message: the next turn of ``previous``'s session, else of the caller's
        session whose transcript the earlier messages are (a stateless client resending
        the conversation), else of a new one. Function calls and their outputs after the
        user message are the client's own tool loop (the turn's first model call reads
        them), unless the outputs answer calls a paused response of the caller's waits on:
        then that response goes on."""
        conversation = conversation_of(items)
        options = turn_options(body, agent, items, conversation)
        session = previous.session if previous is not None else None
        if previous is not None:
            resent = [i for i, item in enumerate(items[: last_user(items)]) if item.role not in INSTRUCTION_ROLES]
            if resent:
                raise serializers.ValidationError(
                    {
                        "input": {
                            resent[0]: [
                                "With previous_response_id the conversation so far is the session's: "
                                "send only the new user message."
                            ]
                        }
                    },
                    code="invalid_value",
                )
        if previous is None and body["store"]:  # store false: a session of its own, kept while its run works
            try:
                paused = answered_run(request.auth, agent, conversation)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"input": exc.detail.get("messages", exc.detail)}) from exc
            if paused is not None:
                tail = items[last_user(items) + 1 :]
                answers = [i for i in tail if i.type == "function_call_output" and i.call_id in conversation.answers]
                return self.answer(request, body, paused, answers)
            session = session_with_history(request.auth, agent, conversation.earlier)
        wire = ResponsesFormat(ResponseState(ResponseHead(id="", created_at=0, model=agent.handle)))

        first = next((said for role, said in conversation.earlier if role == Message.SenderRole.USER), None)

        def start() -> Turn:
            turn = services.start_turn(
                caller=request.auth,
                idempotency=IdempotentRequest.of(request),
                agent=agent if session is None else None,
                session=session,
                text=conversation.text,
                title=fallback_title(first or conversation.text),  # a new session's: no model call for a title
                metadata=body["metadata"],
                user_id=body["user"],
                history=conversation.earlier if session is None else None,
                options=options,
            )
            if session is None and not turn.replayed and not body["store"] and body["stream"]:
                # the relay answers: forget it once the run is done
                run_services.forget_session_when_idle(session=turn.session)
            return turn

        return self.reply(request, body, start, wire=wire)

    # --- answers to a paused response -----------------------------------------------------

    def answer(
        self, request: Request, body: dict[str, Any], run: Run, items: list[InputItem]
    ) -> Response | HttpResponse:
        """``function_call_output`` and ``mcp_approval_response`` items answer the calls
        ``run`` waits on; the same run goes on (and this request answers with it)."""
        for index, item in enumerate(items):
            if not item.is_answer:
                raise serializers.ValidationError(
                    {"input": {index: ["Answers to a response's calls come alone, without new messages."]}},
                    code="invalid_value",
                )
        calls = {call.call_id: call for call in run.tool_calls.all()}
        mine = client_tool_names(run.client_tools)
        for index, item in enumerate(items):
            if (
                item.type == "function_call_output"
                and item.call_id in calls
                and calls[item.call_id].tool_name not in mine
            ):
                raise serializers.ValidationError(
                    {"input": {index: {"call_id": [f"{item.call_id} is not a call of the client's function tools."]}}},
                    code="invalid_value",
                )
            call = calls.get(item.call_id)
            field = "approval_request_id" if item.type == "mcp_approval_response" else "call_id"
            if call is None or call.status != ANSWERS[item.type]:
                why = "is not waiting for this answer" if call is not None else "is not a call of this response"
                raise serializers.ValidationError(
                    {"input": {index: {field: [f"{item.call_id} {why}."]}}}, code="invalid_value"
                )
        after = pause_point(run, [item.call_id for item in items]).seq
        state = state_of(run, until=after, answering={item.call_id for item in items})
        wire = ResponsesFormat(state, continues_after=after)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=run.session,
            run=run,
            answers=[tool_answer(item) for item in items],
            after_seq=after,
        )
        return self.reply(request, body, start, wire=wire)

    # --- answering ------------------------------------------------------------------------

    def reply(
        self, request: Request, body: dict[str, Any], start: Callable[[], Turn], *, wire: ResponsesFormat
    ) -> Response | HttpResponse:
        """Stream the response (the relay), return it at once (``background``), or wait
        for it (its end, or a pause for the client)."""
        if body["stream"]:

            def started() -> Turn:
                turn = start()
                if turn.after_seq is None:
                    wire.state.head = self.head(turn.run, body)
                    wire.state.run_hex = turn.run.uuid.hex
                else:
                    wire.state.head.background = body["background"]
                return turn

            return answer_turn(request, started, wire=wire, headers=session_headers, render=turn_started)

        def timed_out(request: Request, run: Run) -> RunTimeout:
            if not body["store"]:
                run_services.forget_session_when_idle(session=run.session)
            return RunTimeout(
                f"The response {response_id(str(run.uuid))} goes on; retrieve it later.",
                details={"param": None, "response_id": response_id(str(run.uuid))},
            )

        def render(request: Request, turn: Turn) -> Response:
            run = reload(turn.run)
            if not body["background"] and run.status == Run.Status.FAILED:
                if not body["store"]:
                    run_services.forget_session(session_id=run.session_id)
                raise TurnFailed(
                    run.error_message or None,
                    details={"param": None, "response_id": response_id(str(run.uuid)), "code": run.error_code},
                )
            answer = response_body(run)
            answer.update(self.echo(body))
            response = Response(answer, headers=session_headers(request, turn))
            if not body["store"]:
                run_services.forget_session(session_id=run.session_id)  # its run is done or paused: nothing is kept
            return response

        return answer_turn(request, start, wait=not body["background"], timed_out=timed_out, render=render)

    def head(self, run: Run, body: dict[str, Any]) -> ResponseHead:
        head = head_of(run)
        for name, value in self.echo(body).items():
            setattr(head, name, value)
        return head

    @staticmethod
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        """What the response echoes of this request."""
        return {"background": body["background"], "store": body["store"]}


INSTRUCTION_ROLES = ("system", "developer")
# The request's parameters that set the turn's model calls (refused by an agent that does
# not take the client's settings).
SETTING_PARAMETERS = ("instructions", "temperature", "top_p", "max_output_tokens")


def last_user(items: list[InputItem]) -> int:
    return max(i for i, item in enumerate(items) if item.type == "message" and item.role == "user")


def conversation_of(items: list[InputItem]) -> Conversation:
    """The input items as chat messages, read as /v1/chat/completions reads a request's
    messages (``protocols.openai.conversation.Conversation``); a function call joins the
    assistant message before it (one assistant message per step, as a model expects)."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if item.type == "message":
            messages.append({"role": item.role, "content": item.text, "tool_calls": []})
        elif item.type == "function_call":
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        else:  # function_call_output
            content = item.output if isinstance(item.output, str) else json.dumps(item.output)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": content})
    return Conversation.of(messages)


def turn_options(body: dict[str, Any], agent: Agent, items: list[InputItem], conversation: Conversation) -> TurnOptions:
    """What the request asks of the turn (``runs.options``, as /v1/chat/completions builds
    it): ``instructions`` and the input's system and developer messages after the agent's
    own instructions, sampling settings, ``max_output_tokens`` (capped at the agent's
    limit), ``text.format`` as the response format, ``tool_choice``, the function tools
    beside the agent's own, and the client's tool loop after the user message."""
    asked = [name for name in SETTING_PARAMETERS if body.get(name) not in (None, "")]
    system = [(i, item.text) for i, item in enumerate(items) if item.role in INSTRUCTION_ROLES and item.text.strip()]
    if not agent.allow_client_settings:
        refusal = f"The agent `{agent.handle}` does not take the client's settings"
        if asked:
            raise serializers.ValidationError(
                {asked[0]: [f"{refusal}: leave `{asked[0]}` out."]}, code="unsupported_parameter"
            )
        if system:
            raise serializers.ValidationError(
                {"input": {system[0][0]: {"role": [f"{refusal}: its own instructions stand."]}}},
                code="unsupported_parameter",
            )
    instructions = ([body["instructions"]] if body.get("instructions") else []) + [text for _, text in system]
    text_format = (body.get("text") or {}).get("format") or {"type": "text"}
    client_settings = ClientSettings(
        instructions=tuple(instructions),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_tokens=body.get("max_output_tokens"),
        response_format=None if text_format["type"] == "text" else text_format,
        tool_choice=body.get("tool_choice") if body["tools"] else None,
    )
    return TurnOptions(
        settings=client_settings,
        tools=offered_tools(
            agent,
            [
                ClientToolSpec(name=tool["name"], description=tool["description"], input_schema=tool["parameters"])
                for tool in body["tools"]
            ],
            name_at=("name",),
        ),
        steps=conversation.steps,
        text=conversation.steps_text,
    )


def tool_answer(item: InputItem) -> ToolAnswer:
    if item.type == "mcp_approval_response":
        return ToolAnswer(item.call_id, approved=item.approve, reason=item.reason)
    return ToolAnswer(item.call_id, output=tool_output(item.output) if isinstance(item.output, str) else item.output)


def turn_started(request: Request, turn: Turn) -> Response:
    """A replayed streamed request whose stream is no longer kept: what it started."""
    body = {"run_uuid": str(turn.run.uuid), "session_uuid": str(turn.session.uuid)}
    return Response(body, status=status.HTTP_201_CREATED if turn.after_seq is None else status.HTTP_200_OK)


class ResponseDetailView(ProtocolView, APIView):
    """``GET /v1/responses/{id}``: the response now (its stream, ``?stream=true``, is the
    relay's: ``ResponseStreamApp``)."""

    error_voice = staticmethod(openai_error)

    @extend_schema(
        operation_id="responses_retrieve",
        parameters=[
            OpenApiParameter("stream", bool, description="Its stream (SSE), resumable."),
            OpenApiParameter("starting_after", int, description="With stream: only the events after this one."),
        ],
        responses=THE_RESPONSE,
    )
    def get(self, request: Request, response_id: str) -> Response:
        run = find_response(request.auth, response_id)
        return Response(response_body(run))


class ResponseCancelView(ProtocolView, APIView):
    """``POST /v1/responses/{id}/cancel``: stop the run (and the session's runs queued
    behind it); answers the response, ``cancelled`` once the run has stopped."""

    error_voice = staticmethod(openai_error)

    @extend_schema(
        operation_id="responses_cancel",
        request=None,
        responses=THE_RESPONSE,
    )
    def post(self, request: Request, response_id: str) -> Response:
        run = find_response(request.auth, response_id)
        if run.is_active:
            # Answered once its worker honoured the stop (or GENIE_STOP_WAIT passed): a run that
            # ended on its own first is ``completed``, one still stopping ``in_progress``.
            stop_and_wait(session=run.session)
            run = reload(run)
        return Response(response_body(run))


def reload(run: Run) -> Run:
    return Run.objects.select_related("session__agent", "user_message", "agent_message").get(pk=run.pk)


def input_item(message: Message) -> dict[str, Any]:
    if message.sender_role == Message.SenderRole.USER:
        role, part = "user", "input_text"
    else:
        role, part = "assistant", "output_text"
    content: dict[str, Any] = {"type": part, "text": message.text}
    if part == "output_text":
        content["annotations"] = []
    return {
        "id": f"msg_{message.uuid.hex}",
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [content],
    }


class ResponseInputItemsView(ProtocolView, APIView):
    """``GET /v1/responses/{id}/input_items``: the messages this response answered: its
    user message, and for a response that opened its session the conversation sent with
    it. ``order`` (``desc`` by default, as OpenAI), ``limit`` (20, at most 100), ``after``."""

    error_voice = staticmethod(openai_error)

    @extend_schema(
        operation_id="responses_input_items",
        parameters=[InputItemsQuerySerializer],
        responses={
            200: OpenApiResponse(
                {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array"}}},
                description="`{object: list, data, first_id, last_id, has_more}`.",
            ),
            400: openai_error_response("`limit` or `order` out of range; `param` names it."),
            404: RESPONSE_NOT_FOUND,
            **COMMON_OPENAI_ERRORS,
        },
    )
    def get(self, request: Request, response_id: str) -> Response:
        query = InputItemsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        options = query.validated_data
        run = find_response(request.auth, response_id)
        messages = run.session.messages.filter(created_at__lte=run.user_message.created_at)
        before = run.session.runs.turns().filter(created_at__lt=run.created_at).order_by("-created_at", "-id").first()
        if before is not None:
            messages = messages.filter(created_at__gt=before.agent_message.created_at)
        ordered = list(messages.order_by("created_at", "id"))
        if options["order"] == "desc":
            ordered.reverse()
        items = [input_item(message) for message in ordered]
        if options["after"]:
            ids = [item["id"] for item in items]
            items = items[ids.index(options["after"]) + 1 :] if options["after"] in ids else []
        page = items[: options["limit"]]
        return Response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > len(page),
            }
        )


# --- the stream, resumed: GET /v1/responses/{id}?stream=true&starting_after=N ---------------


class ResponseStreamApp(StreamApp):
    """ASGI app for ``GET /v1/responses/{id}``: with ``stream=true`` the relay serves the
    response's stream (from ``starting_after``: nothing lost, nothing twice); any other
    request goes on to Django (``ResponseDetailView``)."""

    def __init__(self) -> None:
        super().__init__(wire=ResponsesFormat, error_voice=openai_error)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        if scope["type"] == "http" and (query.get("stream") or [""])[0].lower() == "true":
            await super().__call__(scope, receive, send)
            return
        from genie.asgi import django_application  # the project's Django app (it routes this app)

        await django_application(scope, receive, send)

    def prepare(self, scope: dict) -> tuple[StreamPlan | StreamRefusal, ResponsesFormat]:
        value = str(scope["url_route"]["kwargs"]["response_id"])
        query = parse_qs(scope.get("query_string", b"").decode())
        missing = StreamRefusal(404, ResponseNotFound.default_code, f"Response with id '{value}' not found.")
        wire = ResponsesFormat(ResponseState(ResponseHead(id=value, created_at=0, model="")))
        raw = (query.get("starting_after") or [""])[0].strip()
        starting_after = None
        if raw:
            if not raw.isdigit():
                return StreamRefusal(400, "invalid_value", "starting_after must be a non-negative integer."), wire
            starting_after = int(raw)
        run_hex = parse_response_id(value)
        run = Run.objects.turns().select_related("session").filter(uuid=run_hex).first() if run_hex else None
        if run is None:
            return missing, wire
        resume = {}
        if starting_after is not None and resume_point(starting_after) > 0:
            resume = {"last_event_id": [str(resume_point(starting_after))]}
        headers = {k: v for k, v in dict(scope["headers"]).items() if k != b"last-event-id"}
        plan = plan_stream(
            headers=headers,
            query=resume,
            session_uuid=str(run.session.uuid),
            run_uuid=str(run.uuid),
            client=scope.get("client"),
            whole_run=True,
        )
        if isinstance(plan, StreamRefusal):
            return (missing if plan.status == 404 else plan), wire
        run = Run.objects.select_related("session__agent", "user_message").get(pk=run.pk)
        state = ResponseState(head_of(run), answered=answered_calls(run))
        return plan, ResponsesFormat(state, starting_after=starting_after)


response_stream_app = ResponseStreamApp()
