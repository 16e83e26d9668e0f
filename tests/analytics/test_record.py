"""The analytics record: an immutable named tuple of plain values, and its JSON form."""

from __future__ import annotations

import json
import math

import pytest

from propylon.domain.analytics import AnalyticsRecord
from tests.analytics.factory import make_record


def test_json_dict_has_an_iso_utc_timestamp_and_every_field() -> None:
    record = make_record(0, time=1_700_000_000.1234, error="rate_limited", status=429)
    data = record.to_json_dict()
    assert data["timestamp"] == "2023-11-14T22:13:20.123Z"
    field_names = set(record._fields)
    assert set(data) == field_names | {"timestamp"}
    for name in field_names:
        assert data[name] == getattr(record, name)
    json.dumps(data)  # plain JSON values only


def test_epoch_timestamp() -> None:
    assert make_record(time=0.0).to_json_dict()["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_record_is_immutable_and_has_no_instance_dict() -> None:
    record = make_record()
    assert not hasattr(record, "__dict__")
    with pytest.raises(AttributeError):
        record.status = 500  # type: ignore[misc]
    with pytest.raises(AttributeError):
        record.unexpected = 1  # type: ignore[attr-defined]


def test_built_positionally_as_the_gateway_does_it() -> None:
    # The gateway skips the named tuple's __new__ (tuple.__new__ with the fields in order).
    record = make_record(4)
    rebuilt = tuple.__new__(AnalyticsRecord, tuple(record))
    assert type(rebuilt) is AnalyticsRecord
    assert rebuilt == record
    assert rebuilt.to_json_dict() == record.to_json_dict()


@pytest.mark.parametrize(
    "seconds", [0.0, 0.9995, 1.5, -0.5, -1.25, -86400.001, 1_700_000_000.999, 1795880008.1482787]
)
def test_iso_utc_matches_datetime_truncated_to_milliseconds(seconds: float) -> None:
    from datetime import UTC, datetime

    from propylon.domain.timestamps import iso_utc

    # datetime rounds to the microsecond too; none of these values is a tie.
    moment = datetime.fromtimestamp(seconds, UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert iso_utc(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "whole", "micros"),
    [(0.0, 0, 0), (1.5, 1, 500_000), (-0.5, -1, 500_000), (-86400.001, -86401, 999_000),
     (1795880008.1482787, 1795880008, 148_279), (1795880008.9999996, 1795880009, 0),
     (-0.0000001, 0, 0), (1e16, 10**16, 0)],
)
def test_split_micros_rounds_to_the_microsecond(seconds: float, whole: int, micros: int) -> None:
    from propylon.domain.timestamps import micro_seconds, split_micros

    assert split_micros(seconds) == (whole, micros)
    assert micro_seconds(seconds) == whole + micros / 1_000_000


def test_json_dict_keeps_microseconds_of_times_and_latencies() -> None:
    record = make_record(time=1795880008.1482787, upstream_latency_ms=2.1239889,
                         total_latency_ms=float("nan"))
    data = record.to_json_dict()
    assert data["time"] == 1795880008.148279
    assert data["upstream_latency_ms"] == 2.124
    assert math.isnan(data["total_latency_ms"])  # type: ignore[arg-type]
    assert make_record(upstream_latency_ms=None).to_json_dict()["upstream_latency_ms"] is None


@pytest.mark.parametrize(
    ("milliseconds", "micros"),
    [(0.0, 0), (2.1239889, 2124), (0.0004, 0), (0.0005, 1), (999_999_999_999.0, 999_999_999_999_000),
     (-0.0004, -1), (-1.0, -1), (1e12, -1), (float("nan"), -1), (float("inf"), -1)],
)
def test_latency_micros_rounds_only_what_it_can_write(milliseconds: float, micros: int) -> None:
    from propylon.domain.timestamps import latency_micros

    assert latency_micros(milliseconds) == micros
