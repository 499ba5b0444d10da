"""A supplier's fleet subgraph: how many meters it has installed per device model and firmware version.

It owns no CPL or library facts. It extends the `DeviceModel` and `CertifiedFirmware` entities of
cfl-graph's subgraphs by their keys, so a gateway composing all three can answer questions that need
both, such as which installed versions have a newer image in the library. Run it with
`uvicorn --factory examples.fleet.app:create_app --port 8001`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Self

import strawberry
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.federation import Schema
from strawberry.federation.schema_directives import Key
from strawberry.federation.types import FieldSet

FEDERATION_VERSION: Final = "2.5"


@dataclass(frozen=True)
class InstalledMeters:
    """Meters of one device model running one firmware version, as the supplier's asset register has them.

    Identifiers are spelt as the CPL spells them (upper-case hex, fixed width): the gateway matches
    entities by exact key values.
    """

    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str
    meter_count: int

    @property
    def model_key(self) -> tuple[str, str, str]:
        return (self.manufacturer_id, self.model_id, self.hardware_version)


# The example supplier's register, on device models of the CPL that cfl-graph's tests use
# (tests/fixtures/library.py): a few meters still on a withdrawn version, most on older ones.
FLEET = (
    InstalledMeters("10B2", "0001", "0100", "00900000", meter_count=40),
    InstalledMeters("10B2", "0001", "0100", "01000000", meter_count=1250),
    InstalledMeters("10B2", "0001", "0100", "01010000", meter_count=4300),
    InstalledMeters("10B2", "0002", "0100", "02000000", meter_count=860),
    InstalledMeters("2C4F", "0007", "0001", "03000000", meter_count=120),
)

# The entities carry no descriptions: the composed graph takes cfl-graph's, and a second, different
# description would only earn a composition hint.


# Only named here, never resolved: the cpl and cfl subgraphs answer every field of a certified version.
@strawberry.federation.type(
    keys=[Key(fields=FieldSet("manufacturerId modelId hardwareVersion firmwareVersion"), resolvable=False)]
)
class CertifiedFirmware:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str


@strawberry.type(description="The supplier's meters of a device model on one firmware version.")
class Installation:
    firmware_version: str
    meter_count: int
    certified_firmware: CertifiedFirmware = strawberry.field(
        description="The installed version, as the CPL and the library know it."
    )

    @classmethod
    def of(cls, meters: InstalledMeters) -> Self:
        return cls(
            firmware_version=meters.firmware_version,
            meter_count=meters.meter_count,
            certified_firmware=CertifiedFirmware(
                manufacturer_id=meters.manufacturer_id,
                model_id=meters.model_id,
                hardware_version=meters.hardware_version,
                firmware_version=meters.firmware_version,
            ),
        )


def installations_of(root: DeviceModel) -> list[Installation]:
    key = (root.manufacturer_id, root.model_id, root.hardware_version)
    found = sorted((m for m in FLEET if m.model_key == key), key=lambda m: m.firmware_version)
    return [Installation.of(meters) for meters in found]


# A device model, by key: this subgraph adds the supplier's installations of it.
@strawberry.federation.type(keys=["manufacturerId modelId hardwareVersion"])
class DeviceModel:
    manufacturer_id: str
    model_id: str
    hardware_version: str
    installations: list[Installation] = strawberry.field(
        resolver=installations_of,
        description="The supplier's meters of this model per firmware version, oldest version first; "
        "empty if it has none.",
    )

    @classmethod
    def resolve_reference(cls, manufacturerId: str, modelId: str, hardwareVersion: str) -> Self:
        # Strawberry passes the representation as the gateway sends it: key fields by their GraphQL names.
        return cls(manufacturer_id=manufacturerId, model_id=modelId, hardware_version=hardwareVersion)


def installed_device_models() -> list[DeviceModel]:
    keys = sorted({meters.model_key for meters in FLEET})
    return [DeviceModel(manufacturer_id=m, model_id=d, hardware_version=h) for m, d, h in keys]


@strawberry.type
class Query:
    installed_device_models: list[DeviceModel] = strawberry.field(
        resolver=installed_device_models,
        description="Device models the supplier has meters of, in key order.",
    )


schema = Schema(query=Query, federation_version=FEDERATION_VERSION)


def create_app() -> Starlette:
    # No authentication in the example: the gateway forwards the client's Authorization header here as
    # to every subgraph, and a real fleet service would check it before answering.
    return Starlette(routes=[Route("/graphql", GraphQL(schema, graphql_ide=None), methods=["GET", "POST"])])
