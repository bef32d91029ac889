"""Requests enter Django a few at a time per ASGI process, in arrival order (issue 29: a
burst of new chats as 25 threads per Daphne sharing one GIL finished together at the
burst's end, each holding a database connection); one still in Django after the window
stops counting, so a slow request (a synchronous wait for a reply) holds up no other for
longer than the window."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from channels.testing import ApplicationCommunicator

from genie.handlers import Admission


async def enter_in_order(admission: Admission, count: int, release: asyncio.Event) -> tuple[list[int], list]:
    entered: list[int] = []

    async def request(n: int) -> None:
        async with admission.slot():
            entered.append(n)
            await release.wait()

    tasks = []
    for n in range(count):
        tasks.append(asyncio.create_task(request(n)))
        await asyncio.sleep(0)  # arrival order
    await asyncio.sleep(0.02)
    return entered, tasks


def test_at_most_limit_requests_are_in_at_once_and_the_rest_enter_in_arrival_order():
    async def scenario() -> tuple[list[int], list[int]]:
        release = asyncio.Event()
        entered, tasks = await enter_in_order(Admission(2, window=10), 5, release)
        first = list(entered)
        release.set()
        await asyncio.gather(*tasks)
        return first, entered

    first, every = asyncio.run(scenario())

    assert first == [0, 1]
    assert every == [0, 1, 2, 3, 4]


def test_a_request_past_the_window_stops_counting():
    async def scenario() -> tuple[list[int], list[int]]:
        release = asyncio.Event()
        entered, tasks = await enter_in_order(Admission(1, window=0.5), 3, release)
        before_window = list(entered)
        await asyncio.sleep(1.5)
        after_window = list(entered)
        release.set()
        await asyncio.gather(*tasks)
        return before_window, after_window

    before_window, after_window = asyncio.run(scenario())

    assert before_window == [0]
    assert after_window == [0, 1, 2]  # each held the next one up for one window, not for good


def test_a_slot_is_given_back_when_the_request_fails():
    admission = Admission(1, window=10)

    async def scenario() -> bool:
        with contextlib.suppress(RuntimeError):
            async with admission.slot():
                raise RuntimeError("the view failed")
        async with asyncio.timeout(1):
            async with admission.slot():
                return True

    assert asyncio.run(scenario())


def test_limit_zero_admits_everyone():
    async def scenario() -> list[int]:
        release = asyncio.Event()
        entered, tasks = await enter_in_order(Admission(0, window=0.01), 6, release)
        release.set()
        await asyncio.gather(*tasks)
        return entered

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4, 5]


@pytest.mark.django_db
def test_every_request_to_django_takes_a_slot_of_the_settings_size(settings):
    from genie.asgi import django_application

    taken: list[str] = []
    admission = django_application.admission
    slot = admission.slot

    @contextlib.asynccontextmanager
    async def recorded():
        async with slot():
            taken.append("slot")
            yield

    async def healthz() -> int:
        from genie.asgi import application

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": "/healthz",
            "raw_path": b"/healthz",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=10)
        body = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        assert body["type"] == "http.response.body"
        return start["status"]

    admission.slot = recorded
    try:
        status = asyncio.run(healthz())
    finally:
        del admission.slot

    assert status == 200
    assert taken == ["slot"]
    assert admission.limit == settings.GENIE_REQUEST_CONCURRENCY == 4
