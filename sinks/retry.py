"""The one retry policy of the drivers, and each backend's errors that a wait can fix.

A write that fails for a reason that may pass (no connection, a timeout, a
server loading or failing over) is tried again after a delay that doubles from
``initial_s`` up to ``max_s``; a policy with ``attempts`` gives up after that
many tries and re-raises the last error, one without waits for as long as it
takes. Anything else is raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    InternalError,
    NotSupportedError,
    ProgrammingError,
)
from redis.exceptions import AuthenticationError, AuthorizationError, ReadOnlyError

T = TypeVar("T")

# Outages a wait can fix: no connection, a timeout, a server still loading its
# data set (BusyLoadingError is a ConnectionError) or a primary that became a
# replica during failover (ReadOnlyError). Bad credentials are ConnectionErrors
# too, but permanent.
REDIS_OUTAGES = (redis.ConnectionError, redis.TimeoutError, ReadOnlyError)
_REDIS_PERMANENT = (AuthenticationError, AuthorizationError)

# ClickHouse server errors a retry cannot fix: bad SQL, types or data, missing
# schema, authentication and permissions. Everything else from the server is
# treated as load or availability trouble and retried.
_CLICKHOUSE_PERMANENT_CODES = frozenset(
    {
        1,  # UNSUPPORTED_METHOD
        6,  # CANNOT_PARSE_TEXT
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        36,  # BAD_ARGUMENTS
        41,  # CANNOT_PARSE_DATETIME
        43,  # ILLEGAL_TYPE_OF_ARGUMENT
        44,  # ILLEGAL_COLUMN
        46,  # UNKNOWN_FUNCTION
        47,  # UNKNOWN_IDENTIFIER
        48,  # NOT_IMPLEMENTED
        53,  # TYPE_MISMATCH
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        81,  # UNKNOWN_DATABASE
        115,  # UNKNOWN_SETTING
        117,  # INCORRECT_DATA
        164,  # READONLY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        407,  # DECIMAL_OVERFLOW
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)


def redis_transient(exc: BaseException) -> bool:
    """Whether a Redis error may pass with time (outage, loading, failover), not credentials."""
    return isinstance(exc, REDIS_OUTAGES) and not isinstance(exc, _REDIS_PERMANENT)


def clickhouse_transient(exc: BaseException) -> bool:
    """Whether retrying the same ClickHouse request may succeed (connection or load trouble)."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, ProgrammingError | DataError | NotSupportedError | InternalError):
        return False
    return isinstance(exc, DatabaseError) and exc.code not in _CLICKHOUSE_PERMANENT_CODES


def always(exc: BaseException) -> bool:
    """For errors that are transient by construction (e.g. undelivered Kafka records)."""
    return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays doubling from ``initial_s`` up to ``max_s``; ``attempts`` tries (None: forever)."""

    initial_s: float
    max_s: float
    attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.initial_s <= self.max_s:
            raise ValueError(
                f"need 0 <= initial_s <= max_s, got initial_s={self.initial_s}, max_s={self.max_s}"
            )
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row."""
        return min(self.initial_s * 2.0 ** (failures - 1), self.max_s)

    def run(
        self,
        operation: Callable[[], T],
        *,
        errors: tuple[type[BaseException], ...],
        transient: Callable[[BaseException], bool],
        on_failure: Callable[[BaseException, int], None] = lambda exc, failures: None,
        on_retry: Callable[[BaseException, int, float], None] = lambda exc, n, delay: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """``operation()``, tried again while it raises one of ``errors`` that is ``transient``.

        ``on_failure(exc, failures)`` hears of every failure of ``errors`` (a
        metric); ``on_retry(exc, failures, delay_s)`` of each one retried (a log
        line). The last error is re-raised when the attempts run out.
        """
        failures = 0
        while True:
            try:
                return operation()
            except errors as exc:
                failures += 1
                on_failure(exc, failures)
                if not transient(exc) or (self.attempts is not None and failures >= self.attempts):
                    raise
                delay = self.delay_s(failures)
                on_retry(exc, failures, delay)
                sleep(delay)
