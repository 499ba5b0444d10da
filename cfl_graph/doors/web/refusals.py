"""How the HTTP doors answer a refusal: the status for each code the domain refuses with, and the JSON
shape `{"error", "code", "problems"}` every endpoint but the graph uses. The domain's errors carry codes,
never HTTP statuses; this is the one place that maps them."""

from __future__ import annotations

from starlette.responses import JSONResponse

HTTP_STATUS: dict[str, int] = {
    "BAD_USER_INPUT": 422,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "HELD": 409,
    "GONE": 410,
    "TOO_LARGE": 413,
    "INSUFFICIENT_STORAGE": 507,
    "UNAVAILABLE": 503,
    "SERVICE_UNAVAILABLE": 503,
}


def http_status(refusal: Exception, default: int = 400) -> int:
    """The status a refusal answers with, by its code."""
    return HTTP_STATUS.get(str(getattr(refusal, "code", "")), default)


def refusal_response(refusal: Exception, problems: list[dict[str, str]] | None = None) -> JSONResponse:
    """The JSON answer to a refusal: its message, its code and its named problems."""
    as_json = getattr(refusal, "as_json", None)
    body = (
        as_json()
        if callable(as_json)
        else {"error": str(refusal), "code": str(getattr(refusal, "code", "")), "problems": problems or []}
    )
    return JSONResponse(body, status_code=http_status(refusal))
