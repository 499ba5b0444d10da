"""The authorisation matrix (R4, R8): every action as every kind of principal, each cell written out.

The expected table below is written by hand from DESIGN.md's access rules, not derived from the code.
"""

from __future__ import annotations

import pytest

from cfl_graph.access.policy import (
    ANY_OWN,
    OWN_MANUFACTURER_ONLY,
    Action,
    Forbidden,
    NotAuthenticated,
    allowed,
    authorise,
)
from cfl_graph.access.principal import Principal
from cfl_graph.tables import Role

OWN, OTHER = "10B2", "2C4F"


def principal(
    role: Role, *, ids: frozenset[str] = frozenset(), read_only: bool = False, downloads: bool = False
) -> Principal:
    return Principal(1, f"a {role.value}", role, ids, read_only, downloads)


PRINCIPALS: dict[str, Principal | None] = {
    "nobody": None,
    "supplier": principal(Role.SUPPLIER),
    "manufacturer": principal(Role.MANUFACTURER, ids=frozenset({OWN})),
    "manufacturer read-only": principal(Role.MANUFACTURER, ids=frozenset({OWN}), read_only=True),
    "panel": principal(Role.PANEL),
    "panel granted downloads": principal(Role.PANEL, downloads=True),
    "admin": principal(Role.ADMIN),
    "admin read-only": principal(Role.ADMIN, read_only=True),
}
COLUMNS = list(PRINCIPALS)

# Y allowed, N forbidden (403), A not authenticated (401); for own-manufacturer actions the
# cell is "own/other": the outcome on the principal's own manufacturer id and on another's.
MATRIX: dict[Action, list[str]] = {
    #                            nobody supplier manuf  m-ro   panel  p+dl   admin  a-ro
    Action.READ_CATALOGUE:      ["A",   "Y",     "Y",   "Y",   "Y",   "Y",   "Y",   "Y"],
    Action.READ_REPORTS:        ["A",   "Y",     "Y",   "Y",   "Y",   "Y",   "Y",   "Y"],
    Action.DOWNLOAD_IMAGE:      ["A",   "Y",     "Y",   "Y",   "N",   "Y",   "N",   "N"],
    Action.READ_AUDIT:          ["A",   "N",     "N",   "N",   "Y",   "Y",   "Y",   "Y"],
    Action.READ_CONSISTENCY:    ["A",   "N/N",   "Y/N", "Y/N", "Y/Y", "Y/Y", "Y/Y", "Y/Y"],
    Action.READ_DRAFTS:         ["A",   "N/N",   "Y/N", "Y/N", "N/N", "N/N", "N/N", "N/N"],
    Action.UPLOAD_IMAGE:        ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.APPROVE_IMAGE:       ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.PUBLISH_IMAGE:       ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.WITHDRAW_IMAGE:      ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.DECLARE_COMMERCIAL:  ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.EDIT_RELEASE_NOTES:  ["A",   "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.RECORD_UPGRADE_PATHWAY: ["A", "N/N",   "Y/N", "N/N", "N/N", "N/N", "N/N", "N/N"],
    Action.MANAGE_PARTIES:      ["A",   "N",     "N",   "N",   "N",   "N",   "Y",   "N"],
    Action.MANAGE_KEYS:         ["A",   "N",     "N",   "N",   "N",   "N",   "Y",   "N"],
    Action.MANAGE_TOKENS:       ["A",   "N",     "N",   "N",   "N",   "N",   "Y",   "N"],
    Action.RUN_SYNC:            ["A",   "N",     "N",   "N",   "N",   "N",   "Y",   "N"],
}  # fmt: skip


def cells() -> list[tuple[Action, str, str | None, str]]:
    out: list[tuple[Action, str, str | None, str]] = []
    for action, row in MATRIX.items():
        for who, cell in zip(COLUMNS, row, strict=True):
            if "/" in cell:
                own, other = cell.split("/")
                out += [(action, who, OWN, own), (action, who, OTHER, other)]
            elif action in OWN_MANUFACTURER_ONLY:  # asked by nobody: still names the id it acts on
                out.append((action, who, OWN, cell))
            else:
                out.append((action, who, None, cell))
    return out


def test_the_matrix_covers_every_action() -> None:
    assert set(MATRIX) == set(Action)


@pytest.mark.parametrize(
    "action,who,manufacturer_id,expected", cells(), ids=lambda v: v.name if isinstance(v, Action) else str(v)
)
def test_authorisation_cell(action: Action, who: str, manufacturer_id: str | None, expected: str) -> None:
    asking = PRINCIPALS[who]
    if expected == "Y":
        assert authorise(asking, action, manufacturer_id=manufacturer_id) is asking
        assert allowed(asking, action, manufacturer_id=manufacturer_id)
    else:
        error = NotAuthenticated if expected == "A" else Forbidden
        with pytest.raises(error):
            authorise(asking, action, manufacturer_id=manufacturer_id)
        assert not allowed(asking, action, manufacturer_id=manufacturer_id)


def test_refusals_say_why() -> None:
    with pytest.raises(Forbidden, match="manufacturer id 2C4F is not registered to a manufacturer"):
        authorise(PRINCIPALS["manufacturer"], Action.PUBLISH_IMAGE, manufacturer_id=OTHER)
    with pytest.raises(Forbidden, match="this token is read-only"):
        authorise(PRINCIPALS["manufacturer read-only"], Action.UPLOAD_IMAGE, manufacturer_id=OWN)
    with pytest.raises(Forbidden, match="the supplier role does not include it"):
        authorise(PRINCIPALS["supplier"], Action.READ_AUDIT)


def test_any_own_manufacturer_id_is_asked_before_an_upload_header_is_read() -> None:
    assert authorise(PRINCIPALS["manufacturer"], Action.UPLOAD_IMAGE, manufacturer_id=ANY_OWN)
    with pytest.raises(Forbidden, match="the supplier role does not include it"):
        authorise(PRINCIPALS["supplier"], Action.UPLOAD_IMAGE, manufacturer_id=ANY_OWN)
    bare = principal(Role.MANUFACTURER, ids=frozenset())
    with pytest.raises(Forbidden, match="no manufacturer id is registered to"):
        authorise(bare, Action.UPLOAD_IMAGE, manufacturer_id=ANY_OWN)


def test_principals_with_the_same_reader_view_may_read_exactly_the_same_things() -> None:
    """The response cache gives one answer to every principal of a view, so the view must capture every
    fact a read decision depends on (and R4: every supplier party is given the same catalogue)."""
    from itertools import product

    from cfl_graph.access.policy import WRITES, reader_view

    kinds = [
        principal(role, ids=ids, read_only=read_only, downloads=downloads)
        for role, ids, read_only, downloads in product(
            Role, [frozenset(), frozenset({OWN}), frozenset({OWN, OTHER})], [False, True], [False, True]
        )
    ]
    reads = [action for action in Action if action not in WRITES]
    targets = [None, OWN, OTHER, ANY_OWN]

    def decisions(who: Principal) -> list[bool]:
        return [
            allowed(who, action, manufacturer_id=target)
            for action in reads
            for target in targets
            if target is not None or action not in OWN_MANUFACTURER_ONLY or who.role is not Role.MANUFACTURER
        ]

    by_view: dict[tuple[str, ...], list[bool]] = {}
    for who in kinds:
        seen = by_view.setdefault(reader_view(who), decisions(who))
        assert seen == decisions(who), (reader_view(who), who)
    suppliers = {reader_view(p) for p in kinds if p.role is Role.SUPPLIER}
    assert suppliers == {("supplier", "downloads")}
    assert reader_view(principal(Role.PANEL)) != reader_view(principal(Role.PANEL, downloads=True))
