"""The JSON-lines writer: appends, keeps its handle, repairs torn lines, translates errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import orjson
import pytest

from propylon.analytics.buffer import AnalyticsWriteError, AnalyticsWriter
from propylon.analytics.jsonl import JsonLinesWriter, _add_line, encode_json_lines
from propylon.domain.analytics import AnalyticsRecord
from tests.analytics.factory import make_record


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def json_form(records: list[AnalyticsRecord]) -> list[object]:
    """What each record's line must parse to: its JSON dict, NaN as null (as orjson writes it)."""
    return [orjson.loads(orjson.dumps(r.to_json_dict())) for r in records]


def parsed(data: bytes) -> list[object]:
    return [orjson.loads(line) for line in data.splitlines()]


def fast_line(record: object) -> bytes:
    """A record's line as the fast path writes it (no fallback to the general path)."""
    parts: list[bytes] = []
    _add_line(record, parts)
    return b"".join(parts)


def test_writes_one_object_per_line_creating_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "analytics.jsonl"
    writer: AnalyticsWriter = JsonLinesWriter(path)
    writer.write_records([make_record(0), make_record(1)])
    writer.write_records([make_record(2)])
    writer.close()
    lines = read_lines(path)
    assert [line["path"] for line in lines] == [f"/orders/items/{i}" for i in range(3)]
    assert lines[0] == make_record(0).to_json_dict()


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    for index in range(2):
        writer = JsonLinesWriter(path)
        writer.write_records([make_record(index)])
        writer.close()
    assert len(read_lines(path)) == 2


def test_keeps_the_file_open_between_batches(tmp_path: Path) -> None:
    writer = JsonLinesWriter(tmp_path / "a.jsonl")
    writer.write_records([make_record(0)])
    handle = writer._file
    writer.write_records([make_record(1)])
    assert writer._file is handle
    assert handle is not None
    writer.close()
    assert handle.closed


def test_batches_are_flushed_before_close(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonLinesWriter(path)
    writer.write_records([make_record(0)])
    assert len(read_lines(path)) == 1  # readable by another process without closing
    writer.close()


def test_a_torn_last_line_is_fenced_off(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"path": "/complete"}\n{"path": "/tor')
    writer = JsonLinesWriter(path)
    writer.write_records([make_record(7)])
    writer.close()
    lines = path.read_text().splitlines()
    assert lines[1] == '{"path": "/tor'
    assert json.loads(lines[2])["path"] == "/orders/items/7"


def test_non_ascii_and_surrogates_stay_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonLinesWriter(path)
    writer.write_records([make_record(0, path="/caf\u00e9/\udcff")])
    writer.close()
    assert read_lines(path)[0]["path"] == "/caf\u00e9/\udcff"


def test_nan_is_written_as_null(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonLinesWriter(path)
    writer.write_records([make_record(0, total_latency_ms=float("nan"))])
    writer.close()
    assert read_lines(path)[0]["total_latency_ms"] is None


def test_an_unserialisable_record_is_skipped_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonLinesWriter(path)
    poison = make_record(1, path=object())  # type: ignore[arg-type]
    writer.write_records([make_record(0), poison, make_record(2)])
    writer.close()
    assert [line["path"] for line in read_lines(path)] == ["/orders/items/0", "/orders/items/2"]
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_os_errors_are_translated(tmp_path: Path) -> None:
    directory = tmp_path / "is-a-directory"
    directory.mkdir()
    writer = JsonLinesWriter(directory)
    with pytest.raises(AnalyticsWriteError) as info:
        writer.write_records([make_record()])
    assert isinstance(info.value.__cause__, OSError)
    writer.close()


def test_closed_writer_refuses_batches_and_close_is_idempotent(tmp_path: Path) -> None:
    writer = JsonLinesWriter(tmp_path / "a.jsonl")
    writer.write_records([make_record()])
    writer.close()
    writer.close()
    with pytest.raises(AnalyticsWriteError, match="closed"):
        writer.write_records([make_record()])


@pytest.mark.parametrize("when", [0.0, 1.5, 1795880008.1482787, 1795880008.9999])
def test_fast_encoding_matches_the_record_json_form(tmp_path: Path, when: float) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonLinesWriter(path)
    record = make_record(3, time=when, developer_id=None)
    writer.write_records([record])
    writer.close()
    assert read_lines(path) == [record.to_json_dict()]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"upstream_latency_ms": None, "developer_id": None}, {"total_latency_ms": float("nan")},
     {"time": 1e16, "path": "/caf\u00e9/\"q\"", "error": "rate_limited"},
     # Every field distinct, so that two fields swapped in the positional unpacking show.
     {"identity": "id-x", "client_id": "client-y", "developer_id": "dev-z", "bytes_in": 3,
      "bytes_out": 4, "upstream_latency_ms": 5.5, "total_latency_ms": 6.5, "error": "e"},
     # Escapes, control characters, non-ASCII, and a value too long to be remembered.
     {"identity": "x" * 300, "client_id": '"quoted"\\', "error": "tab\there \u2028 \x01",
      "developer_id": "d\u00e9v", "upstream_latency_ms": 1e-7, "total_latency_ms": 12345.678901}],
)
def test_a_line_is_the_records_json_dict_in_field_order(overrides: dict[str, object]) -> None:
    record = make_record(5, **overrides)
    line = fast_line(record)
    assert line.endswith(b"}\n")
    assert line.count(b"\n") == 1
    assert parsed(line) == json_form([record])  # same values, NaN as null
    assert list(json.loads(line)) == ["timestamp", *AnalyticsRecord._fields]  # same order
    # Strings, integers and null exactly as orjson writes them; only the numbers differ in form.
    text_fields = {k: v for k, v in record.to_json_dict().items() if not isinstance(v, float)}
    for name, value in text_fields.items():
        assert b'"%b":%b' % (name.encode(), orjson.dumps(value)) in line, name


@pytest.mark.parametrize(
    ("when", "upstream", "total", "written"),
    [
        (1_700_000_000.0, 1.5, 2.25,
         b'"timestamp":"2023-11-14T22:13:20.000Z","time":1700000000.000000,'),
        (1795880008.1482787, 2.1239889999833395, 0.0004,
         b'"timestamp":"2026-11-28T15:33:28.148Z","time":1795880008.148279,'),
        # Rounded to the microsecond, a moment a hair before a second is that second.
        (1795880008.9999996, 1023.9995, 1024.0,
         b'"timestamp":"2026-11-28T15:33:29.000Z","time":1795880009.000000,'),
    ],
)
def test_times_have_microseconds_and_latencies_three_decimals(
    when: float, upstream: float, total: float, written: bytes
) -> None:
    line = fast_line(make_record(1, time=when, upstream_latency_ms=upstream, total_latency_ms=total))
    assert written in line
    assert b'"upstream_latency_ms":%.3f,' % upstream in line
    assert b'"total_latency_ms":%.3f,' % total in line


def test_random_times_and_latencies_round_trip() -> None:
    import random

    rng = random.Random(7)
    records = [
        make_record(
            n,
            time=rng.choice([rng.uniform(-4e9, 4e9), rng.uniform(1.7e9, 1.8e9)]),
            upstream_latency_ms=rng.choice([None, rng.uniform(0, 1e5), rng.expovariate(1.0)]),
            total_latency_ms=rng.choice([rng.uniform(0, 1e7), rng.expovariate(10.0), -1.0]),
            # Values inside and outside the encoder's tables and caches.
            api_id=rng.choice([None, "orders", "stock", f"api-{n % 97}"]),
            method=rng.choice(["GET", "POST", "PATCH", f"M{n % 80}"]),
            status=rng.choice([200, 404, 999, 1000, 1234, 0]),
            bytes_in=rng.choice([0, 1023, 1024, rng.randrange(1 << 40)]),
            error=rng.choice([None, "rate_limited", f"e\"{n % 50}"]),
        )
        for n in range(5000)
    ]
    assert parsed(encode_json_lines(records)) == json_form(records)


def test_a_batch_is_the_concatenation_of_its_lines() -> None:
    # Encoded strings are remembered across records: none may stand in for another value.
    records = [
        make_record(1, identity="a", error="rate_limited", upstream_latency_ms=1.5),
        make_record(2, identity=None, error=None, upstream_latency_ms=None, developer_id="d"),
        make_record(3),
    ]
    assert parsed(encode_json_lines(records)) == json_form(records)


def test_remembered_encodings_stay_bounded_and_right() -> None:
    from propylon.analytics import jsonl

    records = [make_record(n, path=f"/orders/items/{n}", identity=f"id-{n % 7}") for n in range(5000)]
    expected = json_form(records)
    assert parsed(encode_json_lines(records)) == expected
    assert parsed(encode_json_lines(records)) == expected  # now partly from what was remembered
    assert len(jsonl._TEXT) <= 4096


def test_plain_field_tuples_encode_like_records_on_every_path() -> None:
    # The gateway hands the buffer plain tuples (RecordFields); the stdlib fallback for a value
    # orjson refuses (a lone surrogate) must name their fields too.
    records = [make_record(1), make_record(2, identity="\udcff", error="e")]
    lines = encode_json_lines([tuple(r) for r in records]).splitlines()  # type: ignore[misc]
    assert [json.loads(line) for line in lines] == [r.to_json_dict() for r in records]


def test_a_caller_encoded_once_is_not_reused_for_other_clients_or_policies() -> None:
    # Who called is remembered per identity, checked against the other three values each time.
    first = make_record(1, identity="alice", client_id="c1", developer_id="d1", policy="gold")
    others = [
        make_record(2, identity="alice", client_id="c2", developer_id="d1", policy="gold"),
        make_record(3, identity="alice", client_id="c2", developer_id=None, policy="gold"),
        make_record(4, identity="alice", client_id="c2", developer_id=None, policy="silver"),
        make_record(5, identity="alice", client_id="c1", developer_id="d1", policy="gold"),
    ]
    records = [first, *others, first]
    assert parsed(encode_json_lines(records)) == json_form(records)


def test_remembered_routes_stay_bounded_and_right() -> None:
    from propylon.analytics import jsonl

    records = [make_record(n, api_id=f"api-{n}", method="GET") for n in range(5000)]
    records += [make_record(n, api_id="orders", method=f"M{n}") for n in range(100)]
    assert parsed(encode_json_lines(records)) == json_form(records)
    assert len(jsonl._ROUTES) <= 4096
    assert len(jsonl._ROUTES["orders"]) <= 64
