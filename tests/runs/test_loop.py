"""The turn loop inside a worker thread, against a scripted provider."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import connection

from chat.models import Message
from chat.services import start_session
from genie.auth import caller_for_user
from runs import loop, tasks
from runs.models import Run
from runs.providers import Chunk, ProviderRequest


class HeldConnections:
    """A provider that notes, at each chunk it yields, whether the worker holds a
    database connection while it waits on the model."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.held: list[bool] = []

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        for piece in self.pieces:
            self.held.append(connection.connection is not None)
            yield Chunk(text=piece)


@pytest.mark.django_db(transaction=True)
def test_a_streaming_turn_holds_no_database_connection_while_the_model_streams(member, agent):
    with mock.patch.object(tasks.execute_run, "delay"):
        _, run, _ = start_session(caller=caller_for_user(member.user), agent=agent, text="hi")
    provider = HeldConnections(["one ", "two ", "three"])

    with mock.patch.object(loop, "get_provider", return_value=provider):
        loop.execute_run(run.pk)

    assert provider.held == [False, False, False]
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert run.first_token_at is not None
    assert Message.objects.get(pk=run.agent_message_id).text == "one two three"
