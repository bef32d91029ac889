"""Context usage: the figures against hand-counted tokens, the windows by model, the local
model's own tokenizer, the API, and the same figures on each turn's ``finish``."""

from __future__ import annotations

import io

import pytest

from chat import services
from chat.models import Message
from runs import loop
from runs.context import context_usage, context_window, tokenizer_for
from runs.models import Run
from runs.providers import Chunk
from tests.factories import AgentFactory, MessageFactory, RunFactory, SessionFactory
from tests.runs.conftest import published_data, text

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def test_usage_is_counted_part_by_part(settings):
    # Hand-counted with the estimate (a model with no known tokenizer: ceil(characters / 4), +4 a message for its role markers):
    # instructions "You are a test agent." 21 chars: 6 + 4 = 10
    # user "Hello" 5: 2 + 4 = 6; agent "Hi there!" 9: 3 + 4 = 7
    # the attachment "[Attached file: a.txt (text/plain, 4 bytes)]\nabcd" 49 chars: 13
    session = SessionFactory(agent__provider="openai", agent__model="llama3.1:8b", agent__context_window=1000)
    upload = services.store_upload(session=session, file=io.BytesIO(b"abcd"), filename="a.txt")
    user = MessageFactory(session=session, text="Hello")
    user.attachments.add(upload)
    MessageFactory(session=session, sender_role=Message.SenderRole.AGENT, text="Hi there!")
    MessageFactory(session=session, sender_role=Message.SenderRole.AGENT, text="")  # a pending reply: not counted

    usage = context_usage(session)

    assert usage == {
        "model": "llama3.1:8b",
        "context_window": 1000,
        "used_tokens": 36,
        "remaining_tokens": 964,
        "percent": 3.6,
        "breakdown": {"system": 10, "tools": 0, "summary": 0, "messages": 13, "attachments": 13},
        "messages_in_context": 2,
        "messages_total": 2,
        "last_compacted_at": None,
    }


def test_only_the_history_the_prompt_holds_is_in_context(settings):
    settings.GENIE_HISTORY_MESSAGES = 2
    session = SessionFactory()
    for n in range(3):
        MessageFactory(session=session, text=f"m{n}")

    usage = context_usage(session)

    assert (usage["messages_in_context"], usage["messages_total"]) == (2, 3)


@pytest.mark.parametrize(
    ("provider", "model", "own", "expected"),
    [
        ("openai", "gpt-4o-mini", None, 128_000),
        ("openai", "gpt-4.1-nano", None, 1_047_576),
        ("openai", "gpt-3.5-turbo", None, 16_385),
        ("openai", "llama3:8b", None, 8_192),
        ("openai", "gpt-4o", 4_096, 4_096),
        ("local", "SmolLM2-135M-Instruct", None, 2_048),
    ],
)
def test_the_context_window_is_the_agents_or_the_models_default(settings, provider, model, own, expected):
    settings.GENIE_LOCAL_CONTEXT = 2_048
    settings.GENIE_DEFAULT_CONTEXT_WINDOW = 8_192

    assert context_window(AgentFactory.build(provider=provider, model=model, context_window=own)) == expected


@pytest.mark.model
def test_a_local_agent_is_counted_with_the_models_own_tokenizer():
    count = tokenizer_for(AgentFactory.build(provider="local"))

    # SmolLM2's vocabulary: "Hello", " world", ",", " how", " are", " you", "?"
    assert count("Hello world, how are you?") == 7
    assert count("") == 0


@pytest.mark.parametrize(
    ("model", "text", "tokens"),
    [
        # tiktoken's own README example: cl100k_base [83, 1609, 5963, 374, 2294, 0]
        ("gpt-4", "tiktoken is great!", 6),
        ("gpt-3.5-turbo", "hello world", 2),  # [15339, 1917]
        ("gpt-4o-mini", "hello world", 2),  # o200k_base [24912, 2375]
        ("gpt-5", "<|endoftext|>", 7),  # counted as the text it is, not as a special token
    ],
)
def test_an_openai_model_is_counted_with_its_own_encoding(model, text, tokens):
    count = tokenizer_for(AgentFactory.build(provider="openai", model=model))

    assert count(text) == tokens
    assert count("") == 0


def test_a_model_without_a_known_tokenizer_is_estimated():
    count = tokenizer_for(AgentFactory.build(provider="openai", model="llama3.1:8b"))

    assert count("a" * 9) == 3  # 4 characters a token, rounded up


def test_context_usage_over_the_api(api, member, agent):
    session = SessionFactory(agent=agent, owner=member.user)
    MessageFactory(session=session, text="Hello")

    response = api.get(f"/api/v1/sessions/{session.uuid}/context-usage")

    assert response.status_code == 200
    assert response.json() == {**context_usage(session), "last_compacted_at": None}
    assert api.get(f"/api/v1/sessions/{SessionFactory(agent=agent).uuid}/context-usage").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_finish_carries_the_turns_usage_and_the_context_after_it(script, enqueued):
    run = RunFactory(session__agent__context_window=1000)
    script([*text("Hi there!"), Chunk(finish_reason="stop", prompt_tokens=12, completion_tokens=3)])

    loop.execute_run(run.pk)

    run = Run.objects.select_related("session__agent").get(pk=run.pk)
    (finish,) = published_data(run, "finish")
    after = context_usage(run.session)  # now with the stored reply
    assert finish["messageMetadata"] == {
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        "context": after,
    }
    assert after["breakdown"]["messages"] == (2 + 4) + (3 + 4)  # "Hello", "Hi there!"
