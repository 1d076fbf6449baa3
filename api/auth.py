"""Bearer-key authentication: the key, and only the key, says who calls and what it may do."""

from __future__ import annotations

from starlette.requests import Request

from api.keys import ApiKey, KeyStore, Scope
from api.problems import Problem


def authenticate(request: Request, keys: KeyStore, scope: Scope) -> ApiKey:
    """The key of ``request`` if it carries ``scope``: Problem 401 without a valid key, 403
    without the scope."""
    header = request.headers.get("authorization")
    if header is None:
        raise Problem(401, "missing_key", "send Authorization: Bearer <key>", field="Authorization")
    scheme, _, presented = header.strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise Problem(
            401, "bad_authorization", "send Authorization: Bearer <key>", field="Authorization"
        )
    key = keys.lookup(presented)
    if key is None:
        raise Problem(401, "invalid_key", "the key is not valid", field="Authorization")
    if not key.allows(scope):
        raise Problem(
            403,
            "missing_scope",
            f"this key lacks the {scope.value} scope; create one with "
            f"`meterwax api keys create --scope {scope.value}`",
            field="Authorization",
        )
    return key


def read_tenant(request: Request, keys: KeyStore) -> str:
    """The tenant a read key reads; a ``tenant`` parameter may only repeat it (else 403)."""
    key = authenticate(request, keys, Scope.READ)
    # A read key always has a tenant: api.keys refuses one without.
    assert key.tenant is not None
    asked = request.query_params.get("tenant")
    if asked is not None and asked != key.tenant:
        raise Problem(403, "forbidden", "a key can read its own tenant's data only", field="tenant")
    return key.tenant
