"""What the graph's tests share beyond tests/conftest.py: Node with the pinned npm packages."""

from __future__ import annotations

import pytest

from tests.fixtures.node import node_with_packages


@pytest.fixture(scope="session")
def node() -> str:
    """`node`, with package-lock.json's packages installed (`npm ci` if one is missing)."""
    return node_with_packages()
