"""bench.peer's "same facts first" check: our answer and PostGraphile's are reduced to the same facts, so
the two servers are timed only on pages that say the same thing, and any real difference is named.
"""

from __future__ import annotations

import copy
from typing import Any

from bench.peer import OURS, PEERS, facts

MODEL = {
    "manufacturerId": "00A1",
    "modelId": "1F01",
    "hardwareVersion": "0100",
    "manufacturerName": "Acme Meters",
    "modelName": "Acme E1",
    "deviceType": "ESME",
    "smetsVersion": "SMETS2",
}
HASH = "ab" * 32


def ours(size: int = 4096, commercial: bool = True) -> dict[str, Any]:
    version = {
        "firmwareVersion": "01020304",
        "imageHash": HASH,
        "status": "CERTIFIED",
        "listedOn": "2026-03-01",
        "commercial": commercial,
        "libraryImage": {"imageId": "17", "state": "PUBLISHED", "fileSha256": "cd" * 32, "size": size},
    }
    bare = {**version, "firmwareVersion": "01020305", "commercial": False, "libraryImage": None}
    node = {**MODEL, "certifiedFirmware": [version, bare]}
    return {"data": {"deviceModels": {"totalCount": 1, "edges": [{"node": node}]}}}


def peers() -> dict[str, Any]:
    version = {
        "firmwareVersion": "01020304",
        "imageHash": HASH,
        "status": "certified",
        "dateAdded": "2026-03-01",
        "commercialDeclaration": {"firmwareVersion": "01020304"},
        # PostgreSQL's bigint arrives as a string from PostGraphile
        "libraryImage": {"rowId": 17, "state": "published", "fileSha256": "cd" * 32, "size": "4096"},
    }
    bare = {
        **version,
        "firmwareVersion": "01020305",
        "commercialDeclaration": None,
        "libraryImage": None,
    }
    node = {**MODEL, "certifiedFirmware": {"nodes": [version, bare]}}
    return {"data": {"allCplDeviceModels": {"totalCount": 1, "edges": [{"node": node}]}}}


def test_the_two_answers_of_one_page_state_the_same_facts() -> None:
    assert facts(ours(), OURS).difference(facts(peers(), PEERS)) == ""


def test_a_different_image_size_or_commercial_flag_is_a_difference() -> None:
    expected = facts(peers(), PEERS)

    assert "versions differ" in facts(ours(size=4097), OURS).difference(expected)
    assert "versions differ" in facts(ours(commercial=False), OURS).difference(expected)


def test_a_different_total_or_model_order_is_a_difference() -> None:
    expected = facts(peers(), PEERS)
    more = copy.deepcopy(ours())
    more["data"]["deviceModels"]["totalCount"] = 2
    renamed = copy.deepcopy(ours())
    renamed["data"]["deviceModels"]["edges"][0]["node"]["modelName"] = "Acme E2"

    assert facts(more, OURS).difference(expected) == "total 2 against 1"
    assert "first difference at #0" in facts(renamed, OURS).difference(expected)
