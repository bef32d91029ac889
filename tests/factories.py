from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from chat.models import Agent, Message, Session
from feedback.models import Feedback
from genie.models import Member, Team
from runs.models import Run


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Human"
    last_name = "User"


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    team = factory.SubFactory(TeamFactory)
    handle = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.Sequence(lambda n: f"Agent {n}")
    instructions = "You are a test agent."
    provider = "openai"
    model = factory.Sequence(lambda n: f"fake-model-{n}")
    base_url = "http://127.0.0.1:9/v1"
    temperature = 0.0
    is_public = True


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    agent = factory.SubFactory(AgentFactory)
    team = factory.SelfAttribute("agent.team")
    title = "A session"


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    session = factory.SubFactory(SessionFactory)
    sender_role = Message.SenderRole.USER
    text = factory.Sequence(lambda n: f"Message {n}")
    provider = "openai"
    model_id = "fake"


class FeedbackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Feedback

    message = factory.SubFactory(MessageFactory, sender_role=Message.SenderRole.AGENT)
    rating = Feedback.Rating.POSITIVE
    body = "Good"


class RunFactory(factory.django.DjangoModelFactory):
    """A queued run with its user message and pending agent message."""

    class Meta:
        model = Run

    session = factory.SubFactory(SessionFactory, title="")
    user_message = factory.SubFactory(MessageFactory, session=factory.SelfAttribute("..session"), text="Hello")
    agent_message = factory.SubFactory(
        MessageFactory,
        session=factory.SelfAttribute("..session"),
        sender_role=Message.SenderRole.AGENT,
        status=Message.Status.PENDING,
        text="",
    )
