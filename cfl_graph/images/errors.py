"""What can be wrong with an image or a request about one, each named, as the uploader is told it.

`LibraryProblem` names the findings (`cfl_graph.errors.Problem` carries one). `LibraryError` and its kinds
are refusals that changed nothing, each with the code every door reports it under.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from cfl_graph.errors import BAD_FIELD, NotFound, Problem, Refusal
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
    BAD_FIELD = BAD_FIELD
    NO_FILE = "no-file"


class LibraryError(Refusal):
    """A refused request about the library; nothing was changed."""

    code = "CONFLICT"


class ImageNotFound(NotFound):
    def __init__(self, image_id: int) -> None:
        super().__init__(f"there is no image {image_id} that you may see")


class PathwayNotFound(NotFound):
    pass


class ImageGone(LibraryError):
    code = "GONE"


class ImageHeld(LibraryError):
    """The image is held: the current CPL does not certify it as it is; `problems` say why."""

    code = "HELD"


class UploadRefused(LibraryError):
    """The upload is refused and none of it was kept; `problems` say why. `code`: BAD_USER_INPUT unless
    the uploader may not upload it (FORBIDDEN), the version has an image (CONFLICT) or it is too large
    (TOO_LARGE)."""

    def __init__(
        self, problems: Sequence[Problem], *, code: str = "BAD_USER_INPUT", message: str | None = None
    ) -> None:
        super().__init__(
            message or "the image was not accepted: " + "; ".join(p.code for p in problems), problems
        )
        self.code = code
