"""Entry content and its canonical bytes: the fast encoder the log appends with is byte for byte
the `rfc8785` package's JCS over everything the contract allows in audit content."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import entries
from gateway.audit.entries import InvalidContent, Record

SAFE = 2**53 - 1
ids = st.none() | st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE, SAFE) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
data_objects = st.dictionaries(st.text(st.characters(max_codepoint=127)), json_values, max_size=6)


@given(json_values)
def test_the_fast_encoder_is_rfc8785(value: Any) -> None:
    assert entries.canonical(value) == rfc8785.dumps(value)


@given(
    st.integers(0, SAFE),
    st.integers(0, SAFE),
    st.text(),
    st.text(),
    data_objects,
    ids,
    ids,
    ids,
)
def test_encoding_an_entry_is_the_jcs_of_its_content(
    index: int,
    ts: int,
    actor: str,
    action: str,
    data: dict[str, Any],
    device_id: str | None,
    payment_id: str | None,
    order_id: str | None,
) -> None:
    record = Record(actor, action, data, device_id, payment_id, order_id)
    data_text, content = entries.encode(index, ts, record)
    assert content == rfc8785.dumps(entries.content(index, ts, record))
    assert data_text.encode() == rfc8785.dumps(data)


def test_rfc8785_string_and_ordering_examples() -> None:
    """RFC 8785 section 3.2.2.2 (strings) and 3.2.3 (property order, ASCII part)."""
    assert entries.canonical('€$\u000f\nA\'B"\\\\"/') == (
        b'"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'
    )
    assert entries.canonical({"b": 1, "a": {"d": [True, None], "c": "\u00e9"}, "A": 0}) == (
        '{"A":0,"a":{"c":"é","d":[true,null]},"b":1}'.encode()
    )


def test_content_holds_only_the_ids_that_are_set_and_promotes_them_from_data() -> None:
    record = entries.record_of(("admin", "dispute.opened", None, {"payment_id": "pay_1"}))
    assert entries.content(3, 7, record) == {
        "index": 3,
        "ts": 7,
        "actor": "admin",
        "action": "dispute.opened",
        "payment_id": "pay_1",
        "data": {"payment_id": "pay_1"},
    }


class Colour(StrEnum):
    RED = "red"


def test_string_enums_are_written_as_their_value() -> None:
    assert entries.canonical({"c": Colour.RED}) == b'{"c":"red"}'


@pytest.mark.parametrize(
    "value",
    [1.0, {"k": [0.5]}, 2**53, -(2**53), {"é": 1}, {1: 2}, "\udc00", {"s": {"x": "\ud83d"}}],
)
def test_what_the_contract_forbids_is_refused(value: Any) -> None:
    with pytest.raises(InvalidContent):
        entries.canonical(value)


def test_only_well_formed_ids_are_copied_up_from_data() -> None:
    record = entries.record_of(("topic:x", "order.rejected", None, {"order_id": "x" * 65}))
    assert record.order_id is None
    assert "order_id" not in entries.content(0, 0, record)
