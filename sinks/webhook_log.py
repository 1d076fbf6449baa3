"""The webhook delivery log: one ClickHouse row per attempt, and what the CLI reads of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse_schema import quote_database

TABLE = "webhook_deliveries"
_COLUMNS = (
    "msg_id",
    "endpoint",
    "type",
    "tenant",
    "attempt",
    "status",
    "http_status",
    "error",
    "attempted_at",
    "next_attempt_at",
    "created_at",
    "body",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt (``status``: delivered, retrying, failed or redeliver)."""

    msg_id: str
    endpoint: str
    type: str
    tenant: str
    attempt: int
    status: str
    http_status: int
    error: str
    attempted_ms: int
    next_attempt_ms: int | None
    created_ms: int
    body: str


class WebhookLog:
    """Writes attempts and reads each delivery's latest state."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._table = f"{quote_database(database)}.{TABLE}"

    def write(self, attempts: Sequence[Attempt]) -> None:
        """Append ``attempts`` (instants go in as epoch milliseconds)."""
        if not attempts:
            return
        rows = [
            [
                a.msg_id,
                a.endpoint,
                a.type,
                a.tenant,
                a.attempt,
                a.status,
                a.http_status,
                a.error,
                a.attempted_ms,
                a.next_attempt_ms,
                a.created_ms,
                a.body,
            ]
            for a in attempts
        ]
        self._client.insert(TABLE, rows, column_names=_COLUMNS, database=self._database)

    def latest(
        self,
        *,
        status: str | None = None,
        endpoint: str | None = None,
        tenant: str | None = None,
        msg_id: str | None = None,
        limit: int = 100,
    ) -> list[Attempt]:
        """Each delivery's latest row (newest first), filtered."""
        where, params = [], {}
        for name, value in (("endpoint", endpoint), ("tenant", tenant), ("msg_id", msg_id)):
            if value is not None:
                where.append(f"{name} = {{{name}:String}}")
                params[name] = value
        having = "" if status is None else "HAVING last_status = {status:String}"
        if status is not None:
            params["status"] = status
        sql = f"""
            SELECT msg_id, endpoint,
                argMax(type, attempted_at), argMax(tenant, attempted_at),
                max(attempt), toString(argMax(status, attempted_at)) AS last_status,
                argMax(http_status, attempted_at), argMax(error, attempted_at),
                max(attempted_at) AS last_at, argMax(next_attempt_at, attempted_at),
                min(created_at), argMax(body, attempted_at)
            FROM {self._table}
            {"WHERE " + " AND ".join(where) if where else ""}
            GROUP BY msg_id, endpoint
            {having}
            ORDER BY last_at DESC, msg_id
            LIMIT {int(limit)}
        """
        rows = self._client.query(sql, parameters=params).result_rows
        return [_attempt(row) for row in rows]


def _ms(value: Any) -> int:
    assert isinstance(value, datetime)
    # The driver may hand back naive datetimes: the columns are UTC.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _attempt(row: Sequence[Any]) -> Attempt:
    return Attempt(
        row[0],
        row[1],
        row[2],
        row[3],
        int(row[4]),
        row[5],
        int(row[6]),
        row[7],
        _ms(row[8]),
        None if row[9] is None else _ms(row[9]),
        _ms(row[10]),
        row[11],
    )
