"""The two keys the CPL and the library share: a device model (manufacturer id, model id, hardware
version) and a certified version (a device model and a firmware version). One of each, used by the
pipeline, the library, the loaders, the graph and the pages alike.

They are named tuples: equal to, and hashed as, the plain tuples of their parts, so a key built from a
row and one built from a request meet in the same dictionary or DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from cfl_graph import identifiers as ids
from cfl_graph.errors import BAD_FIELD, InvalidInput, Problem


class HasModelKey(Protocol):
    @property
    def manufacturer_id(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def hardware_version(self) -> str: ...


class HasVersionKey(HasModelKey, Protocol):
    @property
    def firmware_version(self) -> str: ...


def _normalised(normalise: Callable[[str], str], value: str) -> str:
    try:
        return normalise(value)
    except ids.InvalidValue as exc:
        raise InvalidInput(str(exc), [Problem(BAD_FIELD, str(exc))]) from exc


class ModelKey(NamedTuple):
    manufacturer_id: str
    model_id: str
    hardware_version: str

    def __str__(self) -> str:
        return f"manufacturer {self.manufacturer_id} model {self.model_id} hardware {self.hardware_version}"

    @classmethod
    def of(cls, row: HasModelKey) -> ModelKey:
        return cls(row.manufacturer_id, row.model_id, row.hardware_version)

    def normalised(self) -> ModelKey:
        """The key as the CPL writes it (`10b2`, `1` → `10B2`, `0001`), or `InvalidInput` naming the field."""
        return ModelKey(
            _normalised(ids.manufacturer_id, self.manufacturer_id),
            _normalised(ids.model_id, self.model_id),
            _normalised(ids.hardware_version, self.hardware_version),
        )


class VersionKey(NamedTuple):
    """A certified version: a device model and a firmware version."""

    manufacturer_id: str
    model_id: str
    hardware_version: str
    firmware_version: str

    def __str__(self) -> str:
        return f"{self.model} firmware {self.firmware_version}"

    @property
    def model(self) -> ModelKey:
        return ModelKey(self.manufacturer_id, self.model_id, self.hardware_version)

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return (self.manufacturer_id, self.model_id, self.hardware_version, self.firmware_version)

    @classmethod
    def of(cls, row: HasVersionKey) -> VersionKey:
        return cls(row.manufacturer_id, row.model_id, row.hardware_version, row.firmware_version)

    @classmethod
    def at(cls, model: ModelKey, firmware_version: str) -> VersionKey:
        return cls(*model, firmware_version)

    def normalised(self) -> VersionKey:
        """The key as the CPL writes it, or `InvalidInput` naming the field."""
        firmware_version = _normalised(ids.firmware_version, self.firmware_version)
        return VersionKey.at(self.model.normalised(), firmware_version)
