"""The domain's own enums, registered with the graph (not copied): the GraphQL values are the members'
names, and each name here is the domain's class itself. The graph's modules take them from here, so each
is registered once, before any schema is built."""

from __future__ import annotations

import strawberry

from cfl_graph.catalogue.reports import FindingKind
from cfl_graph.catalogue.reports import GroupBy as ReportGroupBy
from cfl_graph.catalogue.upgrades import Blocker as UpgradeBlocker
from cfl_graph.identifiers import CplStatus, DeviceType, SmetsVersion
from cfl_graph.identifiers import Specification as TechnicalSpecification

__all__ = [
    "CplStatus",
    "DeviceType",
    "FindingKind",
    "ReportGroupBy",
    "SmetsVersion",
    "TechnicalSpecification",
    "UpgradeBlocker",
]

strawberry.enum(
    DeviceType, description="GBCS device types; the library covers ESME, GSME, PPMID and HCALCS (R1)."
)
strawberry.enum(SmetsVersion, description="A SMETS generation.")
strawberry.enum(
    TechnicalSpecification,
    name="TechnicalSpecification",
    description="The technical specification a firmware version was certified against: SMETS1, SMETS2, or "
    "the Communications Hub Technical Specification (CHTS).",
)
strawberry.enum(CplStatus, description="A certified version's status on the CPL.")
strawberry.enum(ReportGroupBy, name="ReportGroupBy")
strawberry.enum(
    FindingKind, description="Kinds of disagreement between a manufacturer's CFL and CPL listings (R7)."
)
strawberry.enum(
    UpgradeBlocker,
    name="UpgradeBlocker",
    description="Why no upgrade plan reaches the newest version a supplier may install.",
)
