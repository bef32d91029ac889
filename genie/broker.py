"""Celery's Redis transport, hardened against a Redis restart.

When Redis goes away while a task is running, kombu's Redis channel may try to ack the
task's message through a connection it has already dropped and raise AttributeError
(kombu issues #582, #659): the worker exits with "Unrecoverable error". Counting that
error as a connection error makes the worker log it and reconnect instead; the message is
then redelivered after the visibility timeout, which the run's lease makes harmless.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class RedisTransport(kombu_redis.Transport):
    connection_errors = (*kombu_redis.Transport.connection_errors, AttributeError)
