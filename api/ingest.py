"""``POST /v1/events``: one CloudEvent or a batch, validated, produced to the input topic.

A request is refused as a whole (4xx, nothing produced) for a missing or
unscoped key, a wrong content type, a body over the size limits, a batch that
is not a JSON array, or (tenant-scoped key) an event of another subject.
Otherwise it answers 202 with each event's outcome: accepted (delivered to
Kafka with acks=all) or rejected with the flow's reason code. If Kafka does not
take every accepted event, it answers 503 with the same outcomes, those not
delivered marked ``failed``: sending the request again is safe, duplicates are
dropped by the flow's idempotency key (source + id).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import authenticate
from api.context import ApiContext, json_response
from api.ingest_pipeline import Checked
from api.keys import Scope
from api.problems import Problem
from operators.event_batches import BatchFormatError, split_batch

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_RETRY_AFTER_S = "5"


async def post_events(request: Request) -> Response:
    """Validate and produce the events of the request."""
    context = ApiContext.of(request)
    pipeline = context.ingest
    if pipeline is None:
        raise Problem(
            404,
            "not_found",
            "this API takes no events: start it with a Kafka topic to ingest",
            field="path",
        )
    key = authenticate(request, context.keys, Scope.INGEST)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (SINGLE, BATCH):
        raise Problem(
            415,
            "unsupported_media_type",
            f"send Content-Type {SINGLE} (one event) or {BATCH} (a JSON array)",
            field="Content-Type",
        )
    body = await _body(request, pipeline.max_body_bytes)
    if media_type == SINGLE:
        payloads = [body]
    else:
        try:
            payloads = split_batch(body)
        except BatchFormatError as exc:
            raise Problem(400, "bad_batch", str(exc), field="body") from None
        if not payloads:
            raise Problem(400, "bad_batch", "the batch holds no event", field="body")
        if len(payloads) > pipeline.max_batch_events:
            raise Problem(
                413,
                "batch_too_large",
                f"{len(payloads)} events, more than the limit of {pipeline.max_batch_events}; "
                "split the batch",
                field="body",
            )
    checked = pipeline.check(payloads, context.clock.now_ms())
    if key.tenant is not None:
        _check_subjects(checked, key.tenant)
    failed = await pipeline.producer.send([(k, p) for _, k, p in checked.accepted])
    failed_at = {checked.accepted[n][0]: error for n, error in failed.items()}
    body_json = _outcomes(checked, failed_at)
    if failed_at:
        raise Problem(
            503,
            "ingest_unavailable",
            f"Kafka did not take {len(failed_at)} of the accepted events; send the request "
            "again (duplicates are dropped by source and id)",
            headers={"Retry-After": _RETRY_AFTER_S},
            extra=body_json,
        )
    return json_response(body_json, status=202)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "body_too_large", f"the body is longer than {limit} bytes; split it", field="body"
    )


def _check_subjects(checked: Checked, tenant: str) -> None:
    """A tenant-scoped key sends its own subject only: anything else refuses the request."""
    own = tenant.encode()
    others = [index for index, subject, _ in checked.accepted if subject != own]
    others += [i for i, (_, _, subject) in checked.rejected.items() if subject not in ("", tenant)]
    if others:
        index = min(others)
        raise Problem(
            403,
            "forbidden_subject",
            f"event {index}: this key sends events of subject {tenant!r} only; "
            "nothing of this request was produced",
            field=f"[{index}].subject",
        )


def _outcomes(checked: Checked, failed: dict[int, str]) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    rejected = checked.rejected
    for index in range(checked.count):
        if index in rejected:
            reason, detail, _ = rejected[index]
            events.append(
                {"index": index, "status": "rejected", "reason": reason, "detail": detail}
            )
        else:
            events.append({"index": index, "status": "failed" if index in failed else "accepted"})
    return {
        "accepted": checked.count - len(rejected) - len(failed),
        "rejected": len(rejected),
        "failed": len(failed),
        "events": events,
    }


ROUTES = [Route("/v1/events", post_events, methods=["POST"])]
