"""Database tuning that applies to every process."""

import sqlite3

# SQLite has allowed 32,766 bound parameters since 3.32 (this build: more), but Django 5.2 still assumes 999, which
# splits a bulk insert of a wide row into batches of a dozen rows: the number of queries per page would grow with
# the page instead of staying constant.
SQLITE_MAX_QUERY_PARAMS = 32_766


def widen_sqlite_batches(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        connection.features.max_query_params = min(limit, SQLITE_MAX_QUERY_PARAMS)
