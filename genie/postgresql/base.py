"""Django's PostgreSQL backend, with a pool that recovers at once from a database restart.

With ``CONN_HEALTH_CHECKS`` Django hands psycopg's pool ``ConnectionPool.check_connection``,
and the pool backs off (1 s, 2 s, 4 s, ...) after each broken connection it meets. After a
PostgreSQL restart every idle connection is broken: a process holding a dozen of them made
its next request wait past the pool's 10 s timeout and answer 500. Here the first broken
connection has the pool check all its idle ones at once (``pool.check()`` replaces the
broken ones), so the request after a restart waits one back-off step and gets a new
connection.
"""

from __future__ import annotations

from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        if pool is not None and self.settings_dict["CONN_HEALTH_CHECKS"]:
            # The pool keeps its check here; Django gives no other way to name our own.
            pool._check = self.check_pooled_connection
        return pool

    def check_pooled_connection(self, conn: Connection) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self._connection_pools[self.alias].check()
            raise
