"""Refusals the whole service shares: a request refused, having changed nothing, with a code clients can
branch on and the named problems that say why. What HTTP status a refusal answers is the doors' business
(`cfl_graph.doors.web.refusals`), not the domain's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The problem a refused argument or field is named under.
BAD_FIELD = "bad-field"


@dataclass(frozen=True)
class Problem:
    """One named finding: a problem code (`hash-mismatch`, `bad-field`) and what it is about."""

    code: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"problem": self.code, "detail": self.detail}


class Refusal(Exception):
    """A refused request; nothing was changed. `str()` is safe to show to the caller; `code` is what
    GraphQL's `extensions.code` and the JSON refusals carry."""

    code = "CONFLICT"

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def as_json(self) -> dict[str, object]:
        return {"error": str(self), "code": self.code, "problems": [p.as_json() for p in self.problems]}


class InvalidInput(Refusal):
    """An argument, field or parameter the service cannot take; the message names it and what it takes."""

    code = "BAD_USER_INPUT"


class NotFound(Refusal):
    code = "NOT_FOUND"
