"""RFC 9457 problem details: every refused request answers ``application/problem+json``.

A problem names its ``type`` (a stable code under ``/problems/``), a ``title``,
the ``status``, a ``detail`` for people and, when one parameter or field is at
fault, ``field``: the query parameter, header or body field to fix.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """A request the API refuses; ``code`` is stable, ``detail`` says what to fix."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}


def problem_body(problem: Problem) -> dict[str, Any]:
    """The JSON body of ``problem``."""
    body: dict[str, Any] = {
        "type": f"/problems/{problem.code}",
        "title": problem.code.replace("_", " "),
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    body.update(problem.extra)
    return body


def problem_response(problem: Problem) -> JSONResponse:
    """``problem`` as a response: problem+json, never cached."""
    headers = {"Cache-Control": "no-store", **problem.headers}
    if problem.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="meterwax"'
    return JSONResponse(
        problem_body(problem), status_code=problem.status, headers=headers, media_type=PROBLEM_JSON
    )
