"""Celery's Redis transport, hardened against a Redis restart.

When Redis goes away while a task is running, kombu's Redis channel may try to ack the
task's message through a connection it has already dropped and raise AttributeError
(kombu issues #582, #659): the worker exits with "Unrecoverable error". Counting that
error as a connection error makes the worker log it and reconnect instead; the message is
then redelivered after the visibility timeout, which the run's lease makes harmless.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis


class RedisMessage(kombu_redis.Channel.Message):
    def ack_log_error(self, logger: logging.Logger, errors: tuple, multiple: bool = False) -> None:  # noqa: FBT001, FBT002
        """Acking a finished task after Redis restarted fails (the message died with the
        broker's memory, or the connection is new): that is the expected case, not a
        critical one. Nothing is lost: the run's state is in PostgreSQL and its lease makes
        any redelivery harmless."""
        try:
            self.ack(multiple=multiple)
        except (*errors, BrokenPipeError, AttributeError) as exc:
            logger.warning("Task message %r not acked: the broker reconnected (%r)", self.delivery_tag, exc)


class RedisChannel(kombu_redis.Channel):
    Message = RedisMessage


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel
    connection_errors = (*kombu_redis.Transport.connection_errors, AttributeError)
