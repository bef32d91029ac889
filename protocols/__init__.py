"""The wire protocols: other documented APIs served as written, one package each.

This is the top floor. Each protocol (seeds 001-003, the AI SDK's ``/api/chat``, the
OpenAI-compatible ``/v1``) is a thin layer over the services of ``chat`` and ``runs``, the
access rule and the one relay (its wire format lives beside the relay, in ``runs.formats``).
Nothing below this package imports it; ``protocols.urls`` and ``protocols.routing`` are the
one place that collects every protocol's routes.
"""
