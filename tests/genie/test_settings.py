"""Settings come from the environment once, strictly: DEBUG is off unless asked for and a
boolean or number that does not parse stops the process instead of meaning its default."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from genie.settings import env_bool, env_float, env_int
from tests.processes import run_python

PRINT_DEBUG = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("On", True), ("0", False), ("off", False)])
def test_boolean_words(monkeypatch, raw, value):
    monkeypatch.setenv("GENIE_TEST_FLAG", raw)

    assert env_bool("GENIE_TEST_FLAG", not value) is value


@pytest.mark.parametrize(("reader", "raw"), [(env_bool, "ture"), (env_int, "ten"), (env_float, "fast")])
def test_a_value_that_does_not_parse_is_a_configuration_error(monkeypatch, reader, raw):
    monkeypatch.setenv("GENIE_TEST_VALUE", raw)

    with pytest.raises(ImproperlyConfigured, match="GENIE_TEST_VALUE"):
        reader("GENIE_TEST_VALUE", 1)


def test_debug_is_off_unless_asked_for_and_a_typo_stops_the_process():
    env = {key: value for key, value in os.environ.items() if key != "DEBUG"}
    env["DJANGO_SETTINGS_MODULE"] = "genie.settings"

    default = run_python("-c", PRINT_DEBUG, env=env, timeout=60)
    asked = run_python("-c", PRINT_DEBUG, env={**env, "DEBUG": "1"}, timeout=60)
    typo = run_python("-c", PRINT_DEBUG, env={**env, "DEBUG": "ture"}, timeout=60)

    assert default.stdout.strip() == "False"
    assert asked.stdout.strip() == "True"
    assert typo.returncode != 0
    assert "DEBUG='ture' is not a boolean" in typo.stderr


def middleware_chain(handler: object) -> list[object]:
    """The links of Django's request chain, outermost first: middleware instances, the
    exception wrappers between them, and asgiref's sync/async adapters where Django put one."""
    links, node = [], handler
    for _ in range(100):
        links.append(node)
        for attribute in ("__wrapped__", "get_response", "func", "awaitable"):
            if hasattr(node, attribute):
                node = getattr(node, attribute)
                break
        else:
            return links
    raise AssertionError("the chain does not end")


def test_asgi_requests_cross_to_their_thread_once():
    """Under ASGI the views are sync (DRF): the chain should be entered on the request's
    thread once. Django's own handler loads it in async mode and crossed between the
    event loop and the thread at every sync part (6 ms of Daphne CPU on /healthz)."""
    from asgiref.sync import AsyncToSync, SyncToAsync
    from django.conf import settings
    from django.utils.deprecation import MiddlewareMixin

    from genie.asgi import django_application

    links = middleware_chain(django_application._middleware_chain)
    assert [type(link).__name__ for link in links if isinstance(link, SyncToAsync | AsyncToSync)] == []
    assert [type(link).__name__ for link in links if isinstance(link, MiddlewareMixin) and link.async_mode] == []
    assert len([link for link in links if type(link).__name__.endswith("Middleware")]) == len(settings.MIDDLEWARE)


def test_requests_under_asgi_share_one_redis_connection_for_the_cache(monkeypatch):
    """Django's cache handler gives each request context its own cache instance; the rate
    limits read the cache on every request, and each instance used to open (and shake
    hands on) a Redis connection of its own."""
    import asyncio
    import contextvars

    import redis
    from asgiref.sync import sync_to_async
    from django.core.cache import cache

    connects = []  # sockets opened to Redis
    open_socket = redis.connection.Connection._connect

    def counting_open_socket(self: redis.connection.Connection) -> object:
        connects.append(self)
        return open_socket(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", counting_open_socket)

    async def request() -> None:
        await sync_to_async(cache.set)("genie-test:shared-pool", 1, 5)
        await sync_to_async(cache.get)("genie-test:shared-pool")

    for _ in range(5):  # five requests, each in a context of its own, as Daphne runs them
        contextvars.Context().run(asyncio.run, request())

    assert len(connects) <= 1
