"""An agent's provider ``api_key`` and its ``webhook_secret`` are stored encrypted with
GENIE_ENCRYPTION_KEY, as OAuth tokens are (issue 26, finding 13: they were in clear text),
and the migration encrypts the rows stored before it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.models import Agent
from genie.encryption import decrypt
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import TeamFactory

BEFORE, AFTER = ("chat", "0013_agent_allow_client_settings"), ("chat", "0014_agent_secrets_encrypted")


def stored(agent_pk: int) -> tuple[str, str]:
    """What the database holds, under the ORM."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, webhook_secret FROM chat_agent WHERE id = %s", [agent_pk])
        return cursor.fetchone()


@pytest.mark.django_db
def test_an_agents_api_key_and_webhook_secret_are_stored_encrypted(team):
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    body = {"handle": "shop", "name": "Shop", "model": "m", "api_key": "sk-provider-secret"}

    created = bearer_client(key).post("/api/v1/agents", body, format="json").json()

    agent = Agent.objects.get(handle="shop")
    api_key, webhook_secret = stored(agent.pk)
    assert (agent.api_key, agent.webhook_secret) == ("sk-provider-secret", created["webhook_secret"])
    assert "sk-provider-secret" not in api_key
    assert created["webhook_secret"] not in webhook_secret
    assert (decrypt(api_key), decrypt(webhook_secret)) == ("sk-provider-secret", created["webhook_secret"])


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_secrets_stored_in_clear_text():
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("chat", "Agent")
    team = TeamFactory()
    agent = old.objects.create(
        team_id=team.pk, handle="old", name="Old", model="m", api_key="sk-old", webhook_secret="whsec_old"
    )
    assert stored(agent.pk) == ("sk-old", "whsec_old")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    api_key, webhook_secret = stored(agent.pk)
    assert "sk-old" not in api_key
    assert (decrypt(api_key), decrypt(webhook_secret)) == ("sk-old", "whsec_old")
    assert (Agent.objects.get(pk=agent.pk).api_key, Agent.objects.get(pk=agent.pk).webhook_secret) == (
        "sk-old",
        "whsec_old",
    )
