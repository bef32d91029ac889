"""Client tools (seed 003's UI commands): the client executes them (navigate, open a
modal…) and posts the result; the run waits for it, unless the tool's ``wait_for_result``
is false: then the call is a fire-and-forget command, the model is told it was sent, and
the turn goes on."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from runs.tools import CallContext, OfferedTool, ToolError, ToolSpec, offer_itself


class ClientTool:
    kind = "client"
    runs_on_server = False
    required_fields = ()

    def spec_fields(self) -> dict[str, serializers.Field]:
        return {
            "wait_for_result": serializers.BooleanField(
                required=False,
                default=True,
                help_text="False: a UI command the turn does not wait for (the model is told it was sent).",
            )
        }

    def offers(self, spec: ToolSpec) -> list[OfferedTool]:
        return offer_itself(spec)

    def call(self, offered: OfferedTool, arguments: dict[str, Any], context: CallContext) -> Any:
        raise ToolError("A client tool is executed by the client.")
