"""The live fan-out's subscriptions, against a scripted pub/sub connection: a stream is
told it is subscribed only once Redis has subscribed its channel for good."""

from __future__ import annotations

import asyncio

from runs.fanout import LiveFanout, Subscriber


class ScriptedConnection:
    """The commands the fan-out sends; the test plays Redis's replies back."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def command(self, *args: str) -> None:
        self.commands.append(args)


async def settle() -> None:
    for _ in range(10):  # wait_for and shield take a few turns of the loop to pass a result on
        await asyncio.sleep(0)


def test_a_channel_subscribed_again_is_confirmed_by_its_last_subscribe_only():
    async def scenario() -> list[bool]:
        fanout = LiveFanout()
        fanout._protocol = ScriptedConnection()
        seen = []
        first, second = Subscriber(10), Subscriber(10)
        adding = asyncio.ensure_future(fanout.add("genie:live:s", first))
        await asyncio.sleep(0)
        await fanout.remove("genie:live:s", first)  # the stream left before Redis answered
        adding.cancel()
        again = asyncio.ensure_future(fanout.add("genie:live:s", second))
        await asyncio.sleep(0)
        fanout._dispatch([b"subscribe", b"genie:live:s", 1])  # the first SUBSCRIBE's reply
        await settle()
        seen.append(again.done())
        fanout._dispatch([b"unsubscribe", b"genie:live:s", 0])
        fanout._dispatch([b"subscribe", b"genie:live:s", 1])  # the second's: now it holds
        await settle()
        seen.append(again.done())
        assert [c[0] for c in fanout._protocol.commands] == ["SUBSCRIBE", "UNSUBSCRIBE", "SUBSCRIBE"]
        return seen

    assert asyncio.run(scenario()) == [False, True]
