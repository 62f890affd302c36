"""`decode` reads a valid message of this very version in one pass (pydantic's own JSON
parser) and anything else step by step: both ways must agree on every message the one
pass accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.errors import MalformedMessage, MessageError
from tests.protocol.strategies import messages

_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def _step_by_step(payload: bytes) -> m.Message | None:
    """What `decode` makes of `payload` without the one pass (None: refused)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(m, "_current", lambda _payload: None)
        try:
            return m.decode(payload)
        except MessageError:
            return None


def _mutated(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = dict(doc)
    change = data.draw(st.sampled_from(["none", "drop", "set", "add", "version"]))
    if change == "drop":
        del doc[data.draw(st.sampled_from(sorted(doc)))]
    elif change == "set":
        doc[data.draw(st.sampled_from(sorted(doc)))] = data.draw(_VALUES)
    elif change == "add":
        doc[data.draw(st.text(min_size=1, max_size=8))] = data.draw(_VALUES)
    elif change == "version":
        doc["v"] = data.draw(st.sampled_from(["1.0", "1.1", "1.9", "2.0", "01.2", "1", 1.2]))
    return doc


@settings(max_examples=400)
@given(messages, st.data())
def test_what_the_one_pass_accepts_reads_the_same_step_by_step(
    msg: m.Envelope, data: st.DataObject
) -> None:
    payload = json.dumps(_mutated(json.loads(m.encode(msg)), data)).encode()
    one_pass = m._current(payload)
    if one_pass is not None:
        stepwise = _step_by_step(payload)
        assert stepwise == one_pass and type(stepwise) is type(one_pass)


def _heartbeat() -> m.Heartbeat:
    return m.Heartbeat(
        unit_id="cam-01", seq=1, sent_at=m.utcnow(), boot_id="b1", recording=True, gate_open=True
    )


def test_a_message_without_its_version_is_refused_though_the_model_has_a_default() -> None:
    doc = json.loads(m.encode(_heartbeat()))
    del doc["v"]
    with pytest.raises(MalformedMessage, match="'v'"):
        m.decode(json.dumps(doc))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_what_only_pythons_json_reads_still_decodes(encoding: str) -> None:
    msg = _heartbeat()
    payload = m.encode(msg).decode().encode(encoding)
    assert m._current(payload) is None
    assert m.decode(payload) == msg
