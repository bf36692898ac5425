"""The direct line-protocol encoder against influxdb-client's `Point.to_line_protocol()` (no servers)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as LinePoint
from influxdb_client.domain.write_precision import WritePrecision

from linli.tsdb import Point, StoreRejected
from linli.tsdb._base import normalize
from linli.tsdb._http import to_lines

# the characters line protocol escapes, plus unicode (incl. astral and combining), tab, U+2028
SPECIAL = st.sampled_from([" ", ",", "=", '"', "\\", "\t", "é", "中", "🙂", "\u0301", "\u2028", "#", "'"])
CHARS = st.one_of(SPECIAL, st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"))


def _name_ok(s: str) -> bool:
    return not s.endswith("\\")  # normalize() rejects a trailing backslash (it would escape the separator)


names = st.text(CHARS, min_size=1, max_size=12).filter(_name_ok)
measurements = names.filter(lambda s: not s.startswith("#"))  # influxdb-client warns on a comment
tag_names = names.filter(lambda s: s != "time")
field_names = names.filter(lambda s: s not in ("time", "site", "device"))
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**62), max_value=2**62),  # normalize() makes them floats
    st.booleans(),
    st.text(st.one_of(SPECIAL, st.characters(blacklist_categories=("Cs",))), max_size=20),
)
points = st.builds(
    lambda m, site, device, extra, fields, ts: Point(m, {**extra, "site": site, "device": device}, fields, ts),
    measurements,
    names,
    names,
    st.dictionaries(tag_names.filter(lambda s: s not in ("site", "device")), names, max_size=3),
    st.dictionaries(field_names, field_values, min_size=1, max_size=5),
    st.integers(min_value=-(2**53), max_value=2**53),
)


def reference(p: Point) -> str:
    lp = LinePoint(p.measurement).time(p.ts_ms, WritePrecision.MS)  # type: ignore[no-untyped-call]
    for k, v in p.tags.items():
        lp.tag(k, v)
    for k, fv in p.fields.items():
        lp.field(k, fv)
    line: str = lp.to_line_protocol()
    return line


@settings(max_examples=600, deadline=None)
@given(st.lists(points, min_size=1, max_size=5))
def test_matches_influxdb_client(batch: list[Point]) -> None:
    normalized = normalize(batch)
    assert to_lines(normalized) == [reference(p) for p in normalized]


def test_spec_examples() -> None:
    p = Point(
        "my meas,x",
        {"site": "s 1", "device": "d,=1", "b k": "v"},
        {"str": 'say "hi" \\o/', "f": 1.5, "whole": 2.0, "on": True, "off": False, "big": 1e16, "tiny": 1e-7},
        1_795_680_000_123,
    )
    (line,) = to_lines(normalize([p]))
    assert line == (
        r"my\ meas\,x,b\ k=v,device=d\,\=1,site=s\ 1 "
        r'big=1e+16,f=1.5,off=false,on=true,str="say \"hi\" \\o/",tiny=1e-07,whole=2'
        " 1795680000123"
    )


def test_float_repr_precision_round_trips() -> None:
    for x in (0.1, 1 / 3, -2.5e-300, 1.7976931348623157e308, 123456789.123456789, -0.0):
        (line,) = to_lines(normalize([Point("m", {"site": "s", "device": "d"}, {"v": x}, 0)]))
        text = line.split(" ")[1].removeprefix("v=")
        assert float(text) == x and math.copysign(1, float(text)) == math.copysign(1, x)


def test_ints_are_written_as_floats() -> None:
    (line,) = to_lines(normalize([Point("m", {"site": "s", "device": "d"}, {"n": 3, "b": True}, 5)]))
    assert line == "m,device=d,site=s b=true,n=3 5"  # no "i" suffix: the field stays a float


def test_point_without_fields_is_skipped() -> None:
    assert to_lines([Point("m", {"site": "s", "device": "d"}, {}, 1)]) == []


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\\"])
def test_newlines_and_trailing_backslash_rejected(bad: str) -> None:
    with pytest.raises(StoreRejected):
        normalize([Point(bad, {"site": "s", "device": "d"}, {"v": 1.0}, 0)])
    with pytest.raises(StoreRejected):
        normalize([Point("m", {"site": "s", "device": bad}, {"v": 1.0}, 0)])
    with pytest.raises(StoreRejected):
        normalize([Point("m", {"site": "s", "device": "d"}, {bad: 1.0}, 0)])
