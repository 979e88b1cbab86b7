"""The error answers an operation may give, as the OpenAPI document declares them.

Generated clients learn of an answer only from the document, so each operation
names every error it can give: the ones every `/api/` operation can give at
router level (`API_ERRORS`), the rest on the operations that give them. The
bodies are the shapes of api/errors.py: `{"detail": "..."}`, or the seed's
validation error for 422.
"""

from __future__ import annotations

from genai_jobs.api.schemas import ErrorResponse, HTTPValidationErrorResponse

Responses = dict[int | str, dict[str, object]]

_DESCRIPTIONS = {
    401: "Missing, malformed, unknown or revoked token (with `WWW-Authenticate: Bearer`).",
    403: "Needs an admin token.",
    404: "No such resource for this token (another tenant's answers the same).",
    409: "Not possible in the resource's present state.",
    410: "The job expired (the classic status route).",
    413: "The request body is over its limit.",
    429: "The tenant is at a limit an admin set; `Retry-After` says when to try again.",
    501: "Needs what this installation lacks (the embeddings extra).",
    503: "The store is unreachable or not migrated, or the server is busy: try again.",
}


def errors(*codes: int) -> Responses:
    """The OpenAPI `responses` of these error codes."""
    found: Responses = {}
    for code in codes:
        if code == 422:
            found[422] = {"model": HTTPValidationErrorResponse, "description": "Validation Error"}
        else:
            found[code] = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
    return found


# What any authenticated operation can answer.
API_ERRORS = errors(401, 422, 503)
