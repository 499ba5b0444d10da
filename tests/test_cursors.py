"""Cursors come back from clients: any text that is not a cursor a list wrote is refused with what a
cursor is, never with the decoder's words, and what is accepted is exactly what the list wrote."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfl_graph.cursors import MAX_CURSOR_LENGTH, cursor_problem, decode_cursor, encode_cursor
from cfl_graph.errors import InvalidInput

DECODER_WORDS = ("padding", "codec", "Expecting", "utf-8", "JSON", "Invalid base64", "line 1 column", "char ")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


FORGED = {
    "not base64": "not a cursor!",
    "bad padding": "abc",
    "one character": "a",
    "not UTF-8": b64(b"\xff\xfe\x00"),
    "not JSON": b64(b"DeviceModel,10B2"),
    "JSON, not a list": b64(b'{"kind": "DeviceModel"}'),
    "an empty list": b64(b"[]"),
    "a kind that is no list's": b64(b'["Party", "1"]'),
    "numbers where ids belong": b64(b'["DeviceModel", 1, 2, 3]'),
    "too few values": b64(b'["DeviceModel", "10B2", "0001"]'),
    "too many values": b64(b'["DeviceModel", "10B2", "0001", "0100", "x"]'),
    "lower-case ids": b64(b'["DeviceModel", "10b2", "0001", "0100"]'),
    "other scripts' digits": b64('["DeviceModel", "١٠B2", "0001", "0100"]'.encode()),
    "a date that is no date": b64(b'["Gap", "2024-13-45", "10B2", "0001", "0100", "01000000"]'),
    "a date in other digits": b64('["Gap", "٢٠٢٤-01-01", "10B2", "0001", "0100", "01000000"]'.encode()),
    "nested lists": b64(b"[" * 300 + b"]" * 300),
    "huge": b64(json.dumps(["DeviceModel", "A" * 100_000, "0001", "0100"]).encode()),
    "a NUL": b64(b'["DeviceModel", "10B2\\u0000", "0001", "0100"]'),
    "non-ASCII text": "ÿÿÿÿ",
}


@pytest.mark.parametrize("name", FORGED)
def test_forged_cursors_are_refused_saying_what_a_cursor_is(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor("DeviceModel", FORGED[name], 3)
    said = str(refused.value) + " ".join(p.detail for p in refused.value.problems)
    assert "pass an `endCursor` or `cursor` it returned" in str(refused.value)
    assert refused.value.problems[0].detail.startswith("after: ")
    assert not any(word in said for word in DECODER_WORDS), said
    assert len(said) < 400


def test_a_cursor_the_list_wrote_reads_back_and_another_lists_is_refused() -> None:
    model = encode_cursor("DeviceModel", ["10B2", "0001", "0100"])
    gap = encode_cursor("Gap", ["2024-03-31", "10B2", "0001", "0100", "01000000"])
    assert decode_cursor("DeviceModel", model, 3) == ["10B2", "0001", "0100"]
    assert decode_cursor("Gap", gap, 5) == ["2024-03-31", "10B2", "0001", "0100", "01000000"]
    assert cursor_problem(gap) is None and cursor_problem(model) is None
    with pytest.raises(InvalidInput) as refused:
        decode_cursor("Gap", model, 5)
    assert refused.value.problems[0].detail == "after: this cursor belongs to another list"
    assert cursor_problem("A" * (MAX_CURSOR_LENGTH + 1)) is not None


@given(
    st.text(max_size=200) | st.binary(max_size=150).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
)
def test_any_text_is_a_cursor_or_a_reasoned_refusal(text: str) -> None:
    try:
        decode_cursor("DeviceModel", text, 3)
    except InvalidInput as refused:
        assert not any(word in refused.problems[0].detail for word in DECODER_WORDS)
