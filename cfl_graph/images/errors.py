"""What can be wrong with an image or a request about one, each named, as the uploader is told it.

`Problem` is one named finding. `LibraryError` is a refusal that changed nothing: its `status` is the
HTTP answer and its `code` the GraphQL error code, so every door reports it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cfl_graph.images.ota import ImageProblem


class LibraryProblem(StrEnum):
    # Kept on a draft and shown until fixed; publication waits for none.
    NOT_ON_CPL = "not-on-cpl"
    NOT_ACTIVE_ON_CPL = "not-active-on-cpl"
    HASH_MISMATCH = "hash-mismatch"
    SIGNATURE_INVALID = ImageProblem.SIGNATURE_INVALID.value
    DECLARED_COMMERCIAL = "declared-commercial"
    HARDWARE_VERSION_OUTSIDE_RANGE = "hardware-version-outside-range"
    RELEASE_NOTES_MISSING = "release-notes-missing"
    # The upload is refused and nothing is kept.
    MANUFACTURER_NOT_YOURS = "manufacturer-not-yours"
    MODEL_UNKNOWN = "model-unknown"
    MODEL_AMBIGUOUS = "model-ambiguous"
    ALREADY_IN_LIBRARY = "already-in-library"
    TOO_LARGE = "too-large"
    RELEASE_NOTES_INVALID = "release-notes-invalid"
    BAD_FIELD = "bad-field"
    NO_FILE = "no-file"


@dataclass(frozen=True)
class Problem:
    code: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"problem": self.code, "detail": self.detail}


class LibraryError(Exception):
    """A refused request; nothing was changed. `str()` is safe to show to the caller."""

    status = 409
    code = "CONFLICT"

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def as_json(self) -> dict[str, object]:
        return {"error": str(self), "code": self.code, "problems": [p.as_json() for p in self.problems]}


class InvalidInput(LibraryError):
    status = 422
    code = "BAD_USER_INPUT"


class ImageNotFound(LibraryError):
    status = 404
    code = "NOT_FOUND"

    def __init__(self, image_id: int) -> None:
        super().__init__(f"there is no image {image_id} that you may see")


class PathwayNotFound(LibraryError):
    status = 404
    code = "NOT_FOUND"


class ImageGone(LibraryError):
    status = 410
    code = "GONE"


class ImageHeld(LibraryError):
    """The image is held: the current CPL does not certify it as it is; `problems` say why."""

    status = 409
    code = "HELD"


class UploadRefused(LibraryError):
    """The upload is refused and none of it was kept; `problems` say why."""

    def __init__(self, status: int, problems: Sequence[Problem], message: str | None = None) -> None:
        super().__init__(
            message or "the image was not accepted: " + "; ".join(p.code for p in problems), problems
        )
        self.status = status
        self.code = {403: "FORBIDDEN", 409: "CONFLICT", 413: "TOO_LARGE"}.get(status, "BAD_USER_INPUT")
