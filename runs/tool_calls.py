"""One step's tool calls, with one owner: record → advance → report.

When the model has streamed a step's calls, ``StepCalls.record`` stores each as a
``ToolCall`` and announces it (``tool-input-available``), failing at once what cannot run
(arguments that are not a JSON object, an unknown tool, an input its schema refuses).
``advance`` then takes each call as far as it goes now: a call that needs a person's
approval asks for it (``tool-approval-request`` + ``data-approval-required``), a client
tool asks the client (``data-client-tool-call``), a tool with a connection runs with its
end user's token or asks them to authorize (``data-connection-auth-required``), any
other runs on the server (``runs.tools``), once, ever. Each outcome, a person's decision
and an authorization go into the stream once (``Run.state`` remembers what was
reported). When every call is settled, their results join the turn's messages for the
model's next step; while any waits, the run pauses (no worker holds it) and the task
that continues it calls ``advance`` again.

What the calls need between tasks lives in the turn's ``state`` (see ``runs.models.Run``):
``calls`` (the step's call ids), ``reported``, ``decided``, ``connected`` and
``messages``. The tools never touch the ORM; the call's transitions are ``ToolCall.mark_*``.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from genie.connections import release_connection
from genie.links import absolute_url
from runs import connections
from runs import vocabulary as ev
from runs.events import LoggedEvent, RunEventWriter
from runs.models import Run, ToolCall
from runs.options import offered_client_tools
from runs.providers import ToolCallDelta, ToolDefinition
from runs.tools import CallContext, OfferedTool, ToolError, get_tool, offered_tools

logger = logging.getLogger(__name__)

# A call the run was stopped during: the stop did not wait for it, so whether it took
# effect is unknown (it ends by its own timeout, unread).
STOPPED_DURING_CALL = (
    "outcome_unknown: the run was stopped while this call was running; the call may or may not have taken effect."
)


class ToolStopped(Exception):
    """The run was stopped while a server-side call ran."""


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def api_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")  # as the API writes times


@dataclass
class StreamedCall:
    """A tool call as the model streams it within one step."""

    call_id: str
    provider_call_id: str
    tool_name: str
    arguments: str = ""

    def take(self, delta: ToolCallDelta) -> None:
        self.provider_call_id = self.provider_call_id or delta.id
        self.tool_name = self.tool_name or delta.name
        self.arguments += delta.arguments

    def parse_input(self) -> tuple[dict[str, Any] | None, str | None]:
        """The call's input, or the reason it has none."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None, "The tool call's arguments are not valid JSON."
        if not isinstance(value, dict):
            return None, "The tool call's arguments must be a JSON object."
        return value, None


class StepCalls:
    """The tools a turn offers and its current step's calls, as one worker task sees them.

    ``state`` is the turn's (saved to ``Run.state`` at a pause); ``expires_at`` is when an
    action asked for in this task expires (GENIE_ACTION_TTL from the task's start);
    ``offers_tools``: whether the agent's model can call tools at all; ``should_stop``: the
    turn's stop watch, polled while a server-side call runs (a stop never waits for a tool)."""

    def __init__(
        self,
        *,
        run: Run,
        writer: RunEventWriter,
        state: dict[str, Any],
        worker_id: str,
        expires_at: datetime,
        offers_tools: bool,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.run = run
        self.writer = writer
        self.state = state
        self.worker_id = worker_id
        self.expires_at = expires_at
        self.offers_tools = offers_tools
        self.should_stop = should_stop
        self.stopped = False  # a stop came during a call: the step's other calls do not run
        self._offered: dict[str, OfferedTool] | None = None

    @property
    def offered(self) -> dict[str, OfferedTool]:
        """The agent's tools as the model sees them (listed once per task: an MCP server
        is asked for its tools at most once a turn), then the client's own tools for this
        turn (client tools: a call waits for the client's result)."""
        if self._offered is None:
            self._offered = {}
            if self.offers_tools:
                for tool in [
                    *offered_tools(self.run.session.agent.tools),
                    *offered_client_tools(self.run.client_tools),
                ]:
                    self._offered.setdefault(tool.name, tool)  # the agent's own tool keeps its name
        return self._offered

    def definitions(self) -> tuple[ToolDefinition, ...]:
        """What the model's next call is offered."""
        return tuple(tool.definition() for tool in self.offered.values())

    @property
    def pending(self) -> bool:
        """Whether the step's calls still have to be settled and handed to the model."""
        return bool(self.state["calls"])

    def skip_reported(self, logged: list[LoggedEvent]) -> None:
        """What the run's log (``logged``: PostgreSQL and Redis) already reports is not
        reported again: an outcome, a decision or an authorization its dead worker
        published before its checkpoint noted it (``state["reported"]``, ``"decided"``,
        ``"connected"`` lag the stream by up to a checkpoint)."""
        for event in logged:
            if event.type in {ev.TOOL_OUTPUT_AVAILABLE, ev.TOOL_OUTPUT_ERROR, ev.TOOL_OUTPUT_DENIED}:
                noted, key = self.state["reported"], event.data.get("toolCallId")
            elif event.type == ev.TOOL_APPROVAL_RESPONSE:
                noted, key = self.state["decided"], event.data.get("approvalId")
            elif event.type == ev.DATA_CONNECTION_AUTH_SUCCESS:
                noted, key = self.state["connected"], event.data.get("data", {}).get("attempt_id")
            else:
                continue
            if key and key not in noted:
                noted.append(key)

    # --- record --------------------------------------------------------------------------

    def record(self, streamed: list[StreamedCall], step_text: str) -> None:
        """Each call's input is complete: store its ``ToolCall``, announce it
        (``tool-input-available``; ``tool-input-error`` for arguments that are not a JSON
        object), and fail at once what cannot run: invalid JSON, an unknown tool, an
        input its schema refuses (the model is told at the next step)."""
        for position, item in enumerate(streamed):
            arguments, error = item.parse_input()
            offered = self.offered.get(item.tool_name)
            call = ToolCall.objects.create(
                run=self.run,
                call_id=item.call_id,
                provider_call_id=item.provider_call_id,
                step=self.state["steps"],
                position=position,
                tool_name=item.tool_name,
                kind=offered.spec.kind if offered else "",
                arguments=item.arguments,
                input=arguments,
            )
            if error is not None:
                self.writer.emit(
                    ev.TOOL_INPUT_ERROR,
                    toolCallId=call.call_id,
                    toolName=call.tool_name,
                    input=item.arguments,
                    errorText=error,
                )
                call.mark_failed(error)
                self.state["reported"].append(call.call_id)
                continue
            self.writer.emit(ev.TOOL_INPUT_AVAILABLE, toolCallId=call.call_id, toolName=call.tool_name, input=arguments)
            if offered is None:
                call.mark_failed(f"There is no tool named {call.tool_name!r}.")
            elif (invalid := offered.input_error(arguments)) is not None:
                call.mark_failed(invalid)
        if streamed:
            self.state["messages"].append(
                {
                    "role": "assistant",
                    "content": step_text or None,
                    "tool_calls": [
                        {
                            "id": item.provider_call_id or item.call_id,
                            "type": "function",
                            "function": {"name": item.tool_name, "arguments": item.arguments},
                        }
                        for item in streamed
                    ],
                }
            )
        self.state["calls"] = [item.call_id for item in streamed]

    # --- advance -------------------------------------------------------------------------

    def advance(self) -> bool:
        """Take each of the step's calls as far as it goes now and report the outcomes.
        When every call is settled their results join the turn's messages (for the model's
        next step) and this returns True; False while any waits for a person, the client
        or an authorization. One query reads the calls."""
        calls = list(
            ToolCall.objects.filter(call_id__in=self.state["calls"])
            .select_related("connection_attempt__provider")
            .order_by("position")
        )
        for call in calls:
            self.report_decision(call)
            self.report_connection(call)
            self.take_further(call)
            self.report(call)
        if any(call.is_open for call in calls):
            return False
        for call in calls:
            self.state["messages"].append(
                {"role": "tool", "tool_call_id": call.provider_call_id or call.call_id, "content": tool_result(call)}
            )
        self.state["calls"] = []
        return True

    def take_further(self, call: ToolCall) -> None:
        """One call as far as it goes now: a running call is asked about or executed; a
        settled or waiting one stays as it is."""
        if call.status != ToolCall.Status.RUNNING or self.stopped:
            return  # settled, waiting, or left to the run's end (which fails it: it never ran)
        offered = self.offered.get(call.tool_name)
        if offered is None:
            call.mark_failed(f"The tool {call.tool_name!r} is no longer offered.")
        elif offered.spec.requires_approval and not call.decided_by:
            call.mark_waiting(ToolCall.Status.PENDING_APPROVAL)
            self.writer.emit(ev.TOOL_APPROVAL_REQUEST, approvalId=call.call_id, toolCallId=call.call_id)
            self.writer.emit(ev.DATA_APPROVAL_REQUIRED, data=self.action_data(call, "approval"))
        elif not get_tool(offered.spec.kind).runs_on_server and not offered.spec.wait_for_result:
            # A UI command: sent, and the turn goes on (a result posted later is recorded).
            call.mark_sent()
            self.writer.emit(
                ev.DATA_CLIENT_TOOL_CALL, data={**self.action_data(call, "result"), "wait_for_result": False}
            )
        elif not get_tool(offered.spec.kind).runs_on_server:
            call.mark_waiting(ToolCall.Status.AWAITING_RESULT)
            self.writer.emit(ev.DATA_CLIENT_TOOL_CALL, data=self.action_data(call, "result"))
        elif offered.spec.connection:
            self.execute_connected(call, offered)
        else:
            self.execute(call, offered)

    def execute_connected(self, call: ToolCall, offered: OfferedTool) -> None:
        """A tool with a connection runs with its end user's token (refreshed when it
        expired); without a usable one the call waits for the user to authorize the
        provider (``data-connection-auth-required``) and the run pauses."""
        slug = offered.spec.connection or ""
        session = self.run.session
        user_id = connections.end_user_of(session)
        try:
            token = connections.connection_token(team_id=session.team_id, slug=slug, user_id=user_id)
        except connections.ConnectionUnavailable as exc:
            call.mark_failed(exc.message)
            return
        if token is not None:
            self.execute(call, offered, access_token=token)
            return
        attempt, link = connections.request_connection(
            call=call, slug=slug, user_id=user_id, expires_at=self.expires_at
        )
        self.writer.emit(
            ev.DATA_CONNECTION_AUTH_REQUIRED,
            data={
                "attempt_id": str(attempt.attempt_id),
                "provider": slug,
                "call_id": call.call_id,
                "auth_link": {"url": link.url, "expires_at": api_time(link.expires_at)},
                "link_url": absolute_url(None, "runs:connection-link", attempt_id=attempt.attempt_id),
                "reject_url": absolute_url(None, "runs:connection-reject", attempt_id=attempt.attempt_id),
            },
        )

    def execute(self, call: ToolCall, offered: OfferedTool, *, access_token: str | None = None) -> None:
        """Run a server-side tool once, ever. A call a dead attempt had started (its worker
        died during it: the outcome is unknown) is not run again silently: it fails
        ``outcome_unknown``, unless its tool is declared ``idempotent``, which is run again
        with the same call id (a webhook's ``Idempotency-Key``)."""
        if not call.claim_execution():
            if not offered.spec.idempotent:
                call.mark_outcome_unknown()
                return
            logger.info("Run %s: re-executing idempotent call %s after its worker died", self.run.uuid, call.call_id)
        # The lease covers the call's whole timeout: a slow tool is not a dead worker.
        self.run.renew_lease(worker_id=self.worker_id, seconds=offered.spec.timeout + settings.GENIE_RUN_LEASE)
        session = self.run.session
        context = CallContext(
            call_id=call.call_id,
            session_uuid=str(session.uuid),
            run_uuid=str(self.run.uuid),
            # Whom the session's creator vouches for (a browser's user_id is not proof): the
            # same end user connections act for.
            user_id=connections.end_user_of(session),
            webhook_secret=session.agent.webhook_secret,
            access_token=access_token,
        )
        release_connection()
        try:
            output = self.call_watching_stop(offered, call.input or {}, context)
        except ToolStopped:
            self.stopped = True
            call.mark_failed(STOPPED_DURING_CALL)
        except ToolError as exc:
            call.mark_failed(exc.message)
        except Exception:  # a bug in a tool: the model's tool error, not a turn retried and lost
            logger.exception("Tool %s of run %s raised", call.tool_name, self.run.uuid)
            call.mark_failed("The tool failed unexpectedly.")
        else:
            call.mark_succeeded(output)

    def call_watching_stop(self, offered: OfferedTool, arguments: dict[str, Any], context: CallContext) -> Any:
        """The tool's call in a thread of its own while this one polls the stop flag: a stop
        ends the run now instead of after the tool answers (or times out); the abandoned
        call ends by its own timeout. Raises ToolStopped then; whatever the call raised
        otherwise (a ToolError, a bug) is raised here."""
        outcome: dict[str, Any] = {}

        def run_call() -> None:
            try:
                outcome["output"] = get_tool(offered.spec.kind).call(offered, arguments, context)
            except BaseException as exc:  # raised again in the worker's thread
                outcome["error"] = exc

        thread = threading.Thread(target=run_call, name=f"tool-call-{context.call_id}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(settings.GENIE_STOP_POLL_INTERVAL)
            if thread.is_alive() and self.should_stop():
                raise ToolStopped
        if "error" in outcome:
            raise outcome["error"]
        return outcome["output"]

    # --- report --------------------------------------------------------------------------

    def report_decision(self, call: ToolCall) -> None:
        """A person's decision on a call, in the stream once (``tool-approval-response``:
        the AI SDK records it on the tool part, and requires it before the outcome)."""
        if not call.decided_by or call.call_id in self.state["decided"]:
            return
        fields: dict[str, Any] = {"approvalId": call.call_id, "approved": call.status != ToolCall.Status.DENIED}
        if call.reason:
            fields["reason"] = call.reason
        self.writer.emit(ev.TOOL_APPROVAL_RESPONSE, **fields)
        self.state["decided"].append(call.call_id)

    def report_connection(self, call: ToolCall) -> None:
        """The end user's authorization that released a call, in the stream once per run
        (``data-connection-auth-success``): the callback only stores it, this worker is
        the run's one event writer."""
        if call.connection_attempt_id is None:
            return
        attempt = call.connection_attempt
        attempt_id = str(attempt.attempt_id)
        if attempt.status != attempt.Status.AUTHORIZED or attempt_id in self.state["connected"]:
            return
        self.writer.emit(
            ev.DATA_CONNECTION_AUTH_SUCCESS, data={"attempt_id": attempt_id, "provider": attempt.provider.slug}
        )
        self.state["connected"].append(attempt_id)

    def report(self, call: ToolCall) -> None:
        """A settled call's outcome in the stream, once."""
        if not call.is_settled or call.call_id in self.state["reported"]:
            return
        if call.status == ToolCall.Status.SUCCEEDED:
            self.writer.emit(ev.TOOL_OUTPUT_AVAILABLE, toolCallId=call.call_id, output=call.output)
        elif call.status == ToolCall.Status.DENIED:
            self.writer.emit(ev.TOOL_OUTPUT_DENIED, toolCallId=call.call_id)
        else:
            self.writer.emit(ev.TOOL_OUTPUT_ERROR, toolCallId=call.call_id, errorText=call.error or call.status)
        self.state["reported"].append(call.call_id)

    def action_data(self, call: ToolCall, action: str) -> dict[str, Any]:
        url = absolute_url(None, f"runs:tool-call-{action}", session_uuid=self.run.session.uuid, call_id=call.call_id)
        data = {"call_id": call.call_id, "tool_name": call.tool_name, "input": call.input}
        if action == "approval":
            return {**data, "approval_url": url, "expires_at": api_time(self.expires_at)}
        return {**data, "result_url": url}


def tool_result(call: ToolCall) -> str:
    """A settled call as the model reads it in the ``tool`` message."""
    if call.status == ToolCall.Status.SUCCEEDED:
        return json.dumps(call.output)
    if call.status == ToolCall.Status.DENIED:
        reason = f" Reason: {call.reason}" if call.reason else ""
        return json.dumps({"error": f"The user denied this tool call.{reason}"})
    return json.dumps({"error": call.error or call.status})
