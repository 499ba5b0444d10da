"""The image lifecycle in one place: states, transitions, who may see an image and do what with it, and
how published images follow the CPL.

    upload ─► draft ─publish─► published ─withdraw─► withdrawn
                │  ▲ approve,     │   ▲                 ▲
        discard │  │ notes,  hold │   │ release         │ withdraw
                ▼  │ recheck      ▼   │                 │
              (gone)            held ─┴─────────────────┘

A draft is its manufacturer's alone. A published image is served to every party that may download.
A held image is one the current CPL no longer certifies as it is (the version dropped, listed as not
active, or listed with another hash): only a CPL sync holds and releases images (`follow_snapshot`),
in the transaction that makes the snapshot current; it stays in the catalogue with the reason and is
not served. A withdrawn image is the manufacturer's act, with a reason, and is never served again.

Every door (GraphQL, the HTTP endpoints, the web pages, the feeds, the signed catalogue, the exports
and the CLI) asks this module: `may_see` and `visible_to` decide visibility, `steps_for` what a
principal may do next, `download_refusal` whether the bytes may go out, `require` whether a step
applies to the image's state. The checks that gate a publication against the CPL, the keys and the
declarations are `checks.check_image`; the library (`library.ImageLibrary`) runs each step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph import revisions
from cfl_graph.access.policy import ANY_OWN, Action, allowed
from cfl_graph.access.principal import Principal
from cfl_graph.audit import Actor, record
from cfl_graph.catalogue.coverage import image_version_join
from cfl_graph.errors import Problem
from cfl_graph.identifiers import CplStatus
from cfl_graph.images.errors import ImageGone, ImageHeld, LibraryError, LibraryProblem
from cfl_graph.tables import CplCertifiedFirmware, ImageState, LibraryImage
from cfl_graph.tables.base import utc_now


class Step(StrEnum):
    APPROVE = "approve"
    PUBLISH = "publish"
    WITHDRAW = "withdraw"
    EDIT_NOTES = "notes"
    RECHECK = "recheck"
    DISCARD = "discard"
    HOLD = "hold"
    RELEASE = "release"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[ImageState]
    target: ImageState | None  # None: the record is deleted
    action: Action | None  # what the policy must allow; None: the library's own step, never a principal's
    done: str  # "can only be <done>" in refusals


TRANSITIONS: Mapping[Step, Transition] = {
    Step.APPROVE: Transition(
        frozenset({ImageState.DRAFT}), ImageState.DRAFT, Action.APPROVE_IMAGE, "approved"
    ),
    Step.PUBLISH: Transition(
        frozenset({ImageState.DRAFT}), ImageState.PUBLISHED, Action.PUBLISH_IMAGE, "published"
    ),
    Step.WITHDRAW: Transition(
        frozenset({ImageState.PUBLISHED, ImageState.HELD}),
        ImageState.WITHDRAWN,
        Action.WITHDRAW_IMAGE,
        "withdrawn",
    ),
    Step.EDIT_NOTES: Transition(
        frozenset({ImageState.DRAFT}), ImageState.DRAFT, Action.EDIT_RELEASE_NOTES, "given new release notes"
    ),
    Step.RECHECK: Transition(
        frozenset({ImageState.DRAFT}), ImageState.DRAFT, Action.UPLOAD_IMAGE, "checked again"
    ),
    Step.DISCARD: Transition(frozenset({ImageState.DRAFT}), None, Action.UPLOAD_IMAGE, "discarded"),
    Step.HOLD: Transition(frozenset({ImageState.PUBLISHED}), ImageState.HELD, None, "held"),
    Step.RELEASE: Transition(frozenset({ImageState.HELD}), ImageState.PUBLISHED, None, "released"),
}

# Whose bytes go to every party that may download.
SERVED: frozenset[ImageState] = frozenset({ImageState.PUBLISHED})
# In the catalogue for every reader (graph, pages, feeds, signed catalogue, reports), with their state.
LISTED: frozenset[ImageState] = frozenset({ImageState.PUBLISHED, ImageState.HELD, ImageState.WITHDRAWN})


def require(image: LibraryImage, step: Step) -> Transition:
    """The transition, if `step` applies to the image's state; else a refusal that says which states it
    applies to."""
    transition = TRANSITIONS[step]
    if image.state not in transition.sources:
        states = " or ".join(sorted(transition.sources))
        raise LibraryError(
            f"image {image.id} is {image.state}; only {states} images can be {transition.done}"
        )
    return transition


def is_own(principal: Principal | None, manufacturer_id: str) -> bool:
    """Whether the principal acts for the image's manufacturer (and so sees its drafts)."""
    return allowed(principal, Action.READ_DRAFTS, manufacturer_id=manufacturer_id)


def sees_drafts(principal: Principal | None) -> bool:
    """Whether the principal sees any drafts at all (of one of its own manufacturer ids)."""
    return allowed(principal, Action.READ_DRAFTS, manufacturer_id=ANY_OWN)


def may_see(principal: Principal | None, image: LibraryImage) -> bool:
    """Drafts are their manufacturer's alone; every other state is in the catalogue for every reader."""
    if image.state in LISTED:
        return allowed(principal, Action.READ_CATALOGUE)
    return is_own(principal, image.manufacturer_id)


def sight(principal: Principal | None) -> tuple[str, ...] | None:
    """All that decides which images the principal sees: None if it may not read the catalogue, else the
    manufacturer ids whose drafts it sees besides every listed image (sorted; most readers have none)."""
    if not allowed(principal, Action.READ_CATALOGUE):
        return None
    assert principal is not None
    return tuple(sorted(m for m in principal.manufacturer_ids if is_own(principal, m)))


def visible_to(principal: Principal | None) -> ColumnElement[bool]:
    """`may_see` as SQL over `library_images`, for list reads."""
    return visible_in(sight(principal))


def visible_in(sight: tuple[str, ...] | None) -> ColumnElement[bool]:
    """`visible_to` by the principal's `sight`: the same for every principal of the same sight."""
    if sight is None:
        return false()
    listed = LibraryImage.state.in_(sorted(LISTED))
    return or_(listed, LibraryImage.manufacturer_id.in_(sight)) if sight else listed


def own_drafts(principal: Principal) -> ColumnElement[bool]:
    """The principal's own drafts (the upload page lists them)."""
    own = sorted(m for m in principal.manufacturer_ids if is_own(principal, m))
    return and_(LibraryImage.state == ImageState.DRAFT, LibraryImage.manufacturer_id.in_(own))


def steps_for(principal: Principal | None, image: LibraryImage) -> frozenset[Step]:
    """What this principal may do to the image now, as far as its state and the policy go (the checks
    against the CPL and the keys are made when the step is taken)."""
    found = set()
    for step, transition in TRANSITIONS.items():
        if transition.action is None or image.state not in transition.sources:
            continue
        if allowed(principal, transition.action, manufacturer_id=image.manufacturer_id):
            found.add(step)
    return frozenset(found)


def download_refusal(principal: Principal | None, image: LibraryImage) -> LibraryError | None:
    """Why the image's bytes may not go to this (reading) principal, or None. A manufacturer may still
    fetch its own withdrawn or held images, for its records; nobody else may: a withdrawn image is gone,
    and a held one is not what the CPL certifies today."""
    if image.state in SERVED or is_own(principal, image.manufacturer_id):
        return None
    if image.state == ImageState.WITHDRAWN:
        assert image.withdrawn_at is not None
        return ImageGone(
            f"image {image.id} was withdrawn on {image.withdrawn_at:%Y-%m-%d}: {image.withdrawal_reason}"
        )
    if image.state == ImageState.HELD:
        assert image.held_at is not None
        return ImageHeld(
            f"image {image.id} is held since {image.held_at:%Y-%m-%d}, and not served: {image.hold_detail}",
            [Problem(image.hold_problem or LibraryProblem.NOT_ON_CPL, image.hold_detail or "")],
        )
    return None


# --- four eyes -------------------------------------------------------------------------------------


def notes_sha256(image: LibraryImage) -> str:
    """What an approval binds to besides the bytes (which a record never changes): the release notes."""
    return hashlib.sha256((image.release_notes_markdown or "").encode()).hexdigest()


def approval_covers(image: LibraryImage) -> bool:
    """Whether the image was approved as it is now: an approval covers exactly the notes it saw."""
    return image.approved_at is not None and image.approved_notes_sha256 == notes_sha256(image)


def approval_refusal(image: LibraryImage, *, required: bool) -> LibraryError | None:
    """Why a party that publishes only approved drafts may not publish this one yet, or None."""
    if not required or approval_covers(image):
        return None
    if image.approved_at is None:
        return LibraryError(
            f"image {image.id} needs approval by a second token first (approveImage): its manufacturer "
            "publishes only approved images"
        )
    return LibraryError(
        f"image {image.id}'s approval of {image.approved_at:%Y-%m-%d %H:%M} does not cover its release notes "
        "as they are now; a second token approves it again"
    )


# --- following the CPL ------------------------------------------------------------------------------


def _version(image: LibraryImage) -> str:
    return (
        f"manufacturer {image.manufacturer_id} model {image.model_id} hardware {image.hardware_version} "
        f"firmware {image.firmware_version}"
    )


def hold_problem(
    image: LibraryImage, snapshot_id: int, certified: CplCertifiedFirmware | None
) -> Problem | None:
    """Why a published image may not stay served under snapshot `snapshot_id`, or None if it may: the
    snapshot must list its version, as active, with its Manufacturer Image's SHA-256."""
    held = "the image is held until the CPL lists it again"
    if certified is None:
        return Problem(
            LibraryProblem.NOT_ON_CPL,
            f"CPL snapshot {snapshot_id} no longer lists {_version(image)}; {held}",
        )
    if certified.status != CplStatus.ACTIVE.value:
        return Problem(
            LibraryProblem.NOT_ACTIVE_ON_CPL,
            f"CPL snapshot {snapshot_id} lists {_version(image)} as {certified.status}, not active (sheet "
            f"row {certified.sheet_row}); {held} as active",
        )
    if certified.image_hash != image.manufacturer_image_sha256:
        return Problem(
            LibraryProblem.HASH_MISMATCH,
            f"CPL snapshot {snapshot_id} lists the image hash {certified.image_hash} for {_version(image)} "
            f"(sheet row {certified.sheet_row}); this image's Manufacturer Image SHA-256 is "
            f"{image.manufacturer_image_sha256}; {held} with that hash",
        )
    return None


@dataclass(frozen=True)
class Followed:
    """What a snapshot did to the library's published images: ids held, released, and held for a new
    reason (a held image whose version the CPL now lists with yet another fault)."""

    snapshot_id: int
    held: Sequence[int] = ()
    released: Sequence[int] = ()
    reheld: Sequence[int] = ()

    def __str__(self) -> str:
        parts = [f"{len(self.held)} image(s) held", f"{len(self.released)} released"]
        if self.reheld:
            parts.append(f"{len(self.reheld)} still held for another reason")
        return ", ".join(parts)


async def follow_snapshot(session: AsyncSession, snapshot_id: int, actor: Actor) -> Followed:
    """Hold every published image that snapshot `snapshot_id` no longer certifies as it is, and release
    every held image it certifies again, in the caller's transaction (the one that makes the snapshot
    current, so the two commit together). One statement finds the images whose state must change;
    each change is an audit event."""
    cf = CplCertifiedFirmware
    unchanged = and_(
        cf.status == CplStatus.ACTIVE.value, cf.image_hash == LibraryImage.manufacturer_image_sha256
    )
    rows = (
        await session.execute(
            select(LibraryImage, cf)
            .outerjoin(cf, image_version_join(snapshot_id))
            .where(
                or_(
                    and_(
                        LibraryImage.state == ImageState.PUBLISHED,
                        or_(cf.firmware_version.is_(None), ~unchanged),
                    ),
                    LibraryImage.state == ImageState.HELD,
                )
            )
            .order_by(LibraryImage.id)
            .with_for_update(of=LibraryImage)
        )
    ).all()
    held: list[int] = []
    released: list[int] = []
    reheld: list[int] = []
    now = utc_now()
    changes = [(image, certified, hold_problem(image, snapshot_id, certified)) for image, certified in rows]
    if any(_changes(image, problem) for image, _, problem in changes):
        # Writers take the library's counter before the audit trail's head, whatever they do.
        await revisions.bump(session, served=True)
    for image, _certified, problem in changes:
        if image.state == ImageState.PUBLISHED and problem is not None:
            require(image, Step.HOLD)
            _hold(image, problem, snapshot_id, now)
            held.append(image.id)
            action = "image.held"
        elif image.state == ImageState.HELD and problem is None:
            require(image, Step.RELEASE)
            image.state = ImageState.PUBLISHED
            image.hold_problem = image.hold_detail = None
            image.held_at = image.held_snapshot_id = None
            image.released_at = image.state_changed_at = now
            image.problems = []
            released.append(image.id)
            action = "image.released"
        elif image.state == ImageState.HELD and problem is not None and problem.code != image.hold_problem:
            _hold(image, problem, snapshot_id, image.held_at or now)
            reheld.append(image.id)
            action = "image.held"
        else:
            continue
        await record(
            session,
            actor,
            action,
            f"image {image.id} ({image.dcc_file_name}, {_version(image)})",
            {
                "image_id": image.id,
                "snapshot_id": snapshot_id,
                "problem": None if problem is None else problem.code,
                "detail": None if problem is None else problem.detail,
            },
        )
    return Followed(snapshot_id, held, released, reheld)


def _changes(image: LibraryImage, problem: Problem | None) -> bool:
    """Whether `follow_snapshot` changes the image: a hold, a release, or a hold for another reason."""
    if image.state == ImageState.PUBLISHED:
        return problem is not None
    return problem is None or problem.code != image.hold_problem


def _hold(image: LibraryImage, problem: Problem, snapshot_id: int, since: dt.datetime) -> None:
    image.state = ImageState.HELD
    image.hold_problem = problem.code
    image.hold_detail = problem.detail
    image.held_snapshot_id = snapshot_id
    image.held_at = since
    image.state_changed_at = utc_now()
    image.problems = [problem.as_json()]
