"""The analytics record: slotted plain data, and its JSON form."""

from __future__ import annotations

import dataclasses
import json

import orjson
import pytest

from tests.analytics.factory import make_record


def test_json_dict_has_an_iso_utc_timestamp_and_every_field() -> None:
    record = make_record(0, time=1_700_000_000.1234, error="rate_limited", status=429)
    data = record.to_json_dict()
    assert data["timestamp"] == "2023-11-14T22:13:20.123Z"
    field_names = {f.name for f in dataclasses.fields(record)}
    assert set(data) == field_names | {"timestamp"}
    for name in field_names:
        assert data[name] == getattr(record, name)
    json.dumps(data)  # plain JSON values only


def test_epoch_timestamp() -> None:
    assert make_record(time=0.0).to_json_dict()["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_record_is_slotted() -> None:
    record = make_record()
    assert not hasattr(record, "__dict__")
    with pytest.raises(AttributeError):
        record.unexpected = 1  # type: ignore[attr-defined]


def test_orjson_serialises_the_record_as_a_dataclass() -> None:
    # Guards the compiled build: orjson crashes on a mypyc-compiled dataclass (no __slots__, no
    # __dict__), so domain/analytics.py must stay out of setup.py's HOT_PATH.
    data = orjson.loads(orjson.dumps(make_record(2)))
    assert data == {k: v for k, v in make_record(2).to_json_dict().items() if k != "timestamp"}
