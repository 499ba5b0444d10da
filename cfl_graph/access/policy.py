"""The one authorisation policy: which role may do what, and on whose manufacturer ids.

GraphQL resolvers, the HTTP endpoints, the exports, the web pages and the CLI all ask `authorise`;
no other module decides who may do something.
"""

from __future__ import annotations

from enum import StrEnum

from cfl_graph.access.principal import Principal
from cfl_graph.tables.access import Role


class Action(StrEnum):
    READ_CATALOGUE = "read the catalogue"
    READ_REPORTS = "read reports"
    READ_CONSISTENCY = "read a manufacturer's consistency report"
    DOWNLOAD_IMAGE = "download firmware images"
    READ_AUDIT = "read the audit trail"
    READ_DRAFTS = "read draft images"
    UPLOAD_IMAGE = "upload firmware images"
    APPROVE_IMAGE = "approve firmware images"
    PUBLISH_IMAGE = "publish firmware images"
    WITHDRAW_IMAGE = "withdraw firmware images"
    DECLARE_COMMERCIAL = "declare versions commercial"
    EDIT_RELEASE_NOTES = "edit release notes"
    RECORD_UPGRADE_PATHWAY = "record upgrade pathways"
    MANAGE_PARTIES = "manage parties"
    MANAGE_KEYS = "manage manufacturer keys"
    MANAGE_TOKENS = "manage tokens"
    RUN_SYNC = "run the CPL sync"


# Actions that change state: refused to read-only tokens whatever the role.
WRITES = frozenset(
    {
        Action.UPLOAD_IMAGE,
        Action.APPROVE_IMAGE,
        Action.PUBLISH_IMAGE,
        Action.WITHDRAW_IMAGE,
        Action.DECLARE_COMMERCIAL,
        Action.EDIT_RELEASE_NOTES,
        Action.RECORD_UPGRADE_PATHWAY,
        Action.MANAGE_PARTIES,
        Action.MANAGE_KEYS,
        Action.MANAGE_TOKENS,
        Action.RUN_SYNC,
    }
)
# Actions a manufacturer may take only for the manufacturer ids it is registered for.
OWN_MANUFACTURER_ONLY = frozenset(
    {
        Action.READ_DRAFTS,
        Action.READ_CONSISTENCY,
        Action.UPLOAD_IMAGE,
        Action.APPROVE_IMAGE,
        Action.PUBLISH_IMAGE,
        Action.WITHDRAW_IMAGE,
        Action.DECLARE_COMMERCIAL,
        Action.EDIT_RELEASE_NOTES,
        Action.RECORD_UPGRADE_PATHWAY,
    }
)
# Stands for "whichever of its own ids the bytes will name": asked before an upload's header is read.
ANY_OWN = "*"
_READ = frozenset({Action.READ_CATALOGUE, Action.READ_REPORTS})

GRANTS: dict[Role, frozenset[Action]] = {
    # R4: every supplier party gets exactly the same grants; none is favoured or hidden from.
    Role.SUPPLIER: _READ | {Action.DOWNLOAD_IMAGE},
    Role.MANUFACTURER: _READ | {Action.DOWNLOAD_IMAGE} | OWN_MANUFACTURER_ONLY,
    Role.PANEL: _READ | {Action.READ_AUDIT, Action.READ_CONSISTENCY},
    Role.ADMIN: _READ
    | {
        Action.READ_AUDIT,
        Action.READ_CONSISTENCY,
        Action.MANAGE_PARTIES,
        Action.MANAGE_KEYS,
        Action.MANAGE_TOKENS,
        Action.RUN_SYNC,
    },
}


class AccessDenied(Exception):
    """Base of the two refusals; `str()` is safe and useful to show to the caller. The code says which
    (the doors map it to 401 or 403, `cfl_graph.doors.web.refusals`)."""

    code = "FORBIDDEN"


class NotAuthenticated(AccessDenied):
    code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("sign in first: send `Authorization: Bearer <token>`")


class Forbidden(AccessDenied):
    def __init__(self, action: Action, reason: str) -> None:
        super().__init__(f"not allowed to {action.value}: {reason}")
        self.action = action
        self.reason = reason


def _refusal(principal: Principal, action: Action, manufacturer_id: str | None) -> str | None:
    role = principal.role
    if action is Action.DOWNLOAD_IMAGE and role is Role.PANEL and principal.download_granted:
        pass
    elif action not in GRANTS[role]:
        return f"the {role.value} role does not include it"
    if action in WRITES and principal.read_only:
        return "this token is read-only"
    # A manufacturer acts on its own ids only; the panel and admins read any manufacturer's report.
    if action in OWN_MANUFACTURER_ONLY and role is Role.MANUFACTURER:
        if manufacturer_id is None:
            raise ValueError(f"{action.name} needs the manufacturer id it acts on")
        if manufacturer_id == ANY_OWN:
            if not principal.manufacturer_ids:
                return f"no manufacturer id is registered to {principal.party_name}"
        elif manufacturer_id not in principal.manufacturer_ids:
            return f"manufacturer id {manufacturer_id} is not registered to {principal.party_name}"
    return None


def authorise(
    principal: Principal | None, action: Action, *, manufacturer_id: str | None = None
) -> Principal:
    """Return the principal if it may take `action` (on `manufacturer_id`), else raise `AccessDenied`."""
    if principal is None:
        raise NotAuthenticated()
    reason = _refusal(principal, action, manufacturer_id)
    if reason is not None:
        raise Forbidden(action, reason)
    return principal


def allowed(principal: Principal | None, action: Action, *, manufacturer_id: str | None = None) -> bool:
    return principal is not None and _refusal(principal, action, manufacturer_id) is None


def reader_view(principal: Principal) -> tuple[str, ...]:
    """What this policy's read decisions for `principal` depend on, and nothing else: two principals
    with the same view may read exactly the same things, so they may be given the same answers (the
    GraphQL response cache shares answers between them). Writes are not covered: they are never
    shared."""
    downloads = "downloads" if allowed(principal, Action.DOWNLOAD_IMAGE) else "no-downloads"
    own = sorted(principal.manufacturer_ids) if principal.role is Role.MANUFACTURER else []
    return (principal.role.value, downloads, *own)
