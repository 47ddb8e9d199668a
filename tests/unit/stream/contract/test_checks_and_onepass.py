import orjson
import pytest

from stream.contract import Codec, Source, routing_key, validate_event
from stream.contract.bounds import Bounds
from stream.contract.checks import Invalid, visit_checked
from stream.contract.checks import event_checked as _event_checked
from stream.contract.onepass import event_fast as _event_fast
from stream.contract.onepass import visit_fast
from stream.contract.records import METHODS
from stream.timeutil import parse_instant
from tests.factories import T0, event, visit

SRC = Source("ecm.events", 2, 10)
_CODEC = Codec()
fast_records = _CODEC.records
raw_object = _CODEC.raw_object
validate_visit = _CODEC.visit


BOUNDS = Bounds()


def split_message(value, source):
    return _CODEC.split(value, source)


def _visit_fast(doc):
    return visit_fast(doc, _CODEC.workers, _CODEC.instant, BOUNDS)


def _visit_checked(doc):
    return visit_checked(doc, _CODEC.workers, BOUNDS)


def event_fast(doc):
    return _event_fast(doc, BOUNDS)


def event_checked(doc):
    return _event_checked(doc, BOUNDS)


def test_split_single_object_and_array():
    objs, rej = split_message(b'{"a": 1}', SRC)
    assert objs == [{"a": 1}] and rej == []
    objs, rej = split_message(b'[{"a": 1}, 3, {"b": 2}, {}]', SRC)
    assert objs == [{"a": 1}, None, {"b": 2}, {}]  # the rejected one stands as None
    assert [(r.reason, r.source.index) for r in rej] == [("not_an_object", 1)]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe", "invalid_utf8"), (b"{not json", "invalid_json"), (b"", "invalid_json"),
])
def test_undecodable_messages(raw, reason):
    objs, rej = split_message(raw, SRC)
    assert objs == [] and [r.reason for r in rej] == [reason] and rej[0].raw == raw


def test_routing_key():
    assert routing_key({"client_id": "c1"}) == "c1"
    assert routing_key({"client_id": 5}) is None
    assert routing_key({}) is None


def test_naive_times_are_refused():
    assert parse_instant("2026-11-18T09:00:00") is None
    assert parse_instant("2026-11-18T09:00:00+01:00") == parse_instant("2026-11-18T08:00:00Z")


@pytest.mark.parametrize("text", [
    "2026-11-18T09:00:00+01", "2026-11-18T09:00:00,5Z", "2026-11-18T09:00:00.Z",
    "2026-11-18T09:00:00+01:00:30", "2026-11-18T09:00:00 +01:00", "2026-11-18T09:00Z",
    "2026-02-29T09:00:00Z", "2026-11-18T24:00:00Z", " 2026-11-18T09:00:00Z", "20261118T090000Z"])
def test_only_rfc_3339_instants_are_read(text):
    assert parse_instant(text) is None
    assert validate_event(dict(event(at=T0), occurred_at=text))[0] == "invalid_time"


@pytest.mark.parametrize("text", ["2026-11-18T09:00:00.123456789Z", "2026-11-18T09:00:00.9999995Z",
                                  "2026-11-18t09:00:00z", "2026-11-18 10:00:00.5+01:00"])
def test_an_instant_reads_the_same_from_the_bytes_and_from_the_object(text):
    """Nanoseconds (a Java Instant writes them) round to the microsecond on both paths."""
    doc = dict(event(at=T0), occurred_at=text)
    (fast,) = fast_records(orjson.dumps(doc), False)
    full = validate_event(doc)
    assert fast.occurred_at == full.occurred_at == parse_instant(text) is not None


@pytest.mark.parametrize(("change", "reason"), [
    ({"worker_ids": []}, "invalid_value"),
    ({"worker_ids": ["a", "b", "c"]}, "invalid_value"),
    ({"worker_ids": "w1"}, "wrong_type"),
    ({"scheduled_start": "yesterday"}, "invalid_time"),
    ({"scheduled_end": "2026-11-20T12:00:00Z"}, "visit_too_long"),
    ({"location": {"lat": 0, "lon": 0}}, "invalid_coordinates"),
    ({"location": {"lat": "52", "lon": 1}}, "invalid_coordinates"),
    ({"risk_level": "extreme"}, "invalid_value"),
    ({"late_after_s": -5}, "invalid_value"),
    ({"lives_alone": "yes"}, "wrong_type"),
    ({"geofence": {"type": "Point"}}, "invalid_value"),
    ({"client_id": None}, "missing_field"),
])
def test_invalid_visits(change, reason):
    doc = visit()
    doc.update(change)
    result = validate_visit(doc)
    assert isinstance(result, tuple) and result[0] == reason


@pytest.mark.parametrize(("change", "reason"), [
    ({"type": "arrive"}, "invalid_value"),
    ({"method": "carrier pigeon"}, "invalid_value"),
    ({"lat": float("nan")}, "invalid_coordinates"),
    ({"lon": 181.0}, "invalid_coordinates"),
    ({"accuracy_m": -1}, "invalid_value"),
    ({"occurred_at": 1234}, "wrong_type"),
    ({"worker_id": ""}, "invalid_value"),
])
def test_invalid_events(change, reason):
    doc = event(at=T0)
    doc.update(change)
    result = validate_event(doc)
    assert isinstance(result, tuple) and result[0] == reason


def test_valid_records():
    assert validate_visit(visit()).worker_ids == ("w1",)
    ev = validate_event(event(at=T0, method="telephony"))
    assert ev.caller_number == "01603 000111" and ev.lat is None


_ODD = [None, True, 0, 1, -1, 2.5, float("nan"), float("inf"), "", "x", "w1", [], ["w1"],
        ["w1", "w1"], ["w1", "w2"], ["w1", 7], {}, {"lat": 52.5, "lon": 1.5},
        {"lat": 52, "lon": 1}, {"lat": 0.0, "lon": 0.0}, {"lat": 91.0, "lon": 1.0},
        "2026-11-18T12:00:00Z", "2026-11-18T12:00:00", 100_001.0, 90_001, "low", "cancelled"]


def _one_pass_against_full_checks(base, fields, values, fast, checked, roster):
    """Every field of ``base`` set to each value in turn, as a decoded object and as a
    message's bytes: the one-pass path either leaves the record to the full checks or builds
    the same record they do, with floats where they have floats. Returns how many records
    the full checks accepted, and how many of them each one-pass path took."""
    def full(doc):
        try:
            return checked(doc)
        except Invalid:
            return None

    accepted = taken = taken_bytes = 0
    for name in fields:
        for value in values:
            doc = dict(base, **{name: value})
            want = full(doc)
            accepted += want is not None
            got = fast(doc)
            if got is not None:
                taken += 1
                assert want is not None and got == want and got.raw is doc, (name, value)
                assert [type(getattr(got, f)) for f in _FLOATS[roster]] == \
                    [type(getattr(want, f)) for f in _FLOATS[roster]], (name, value)
            # Through JSON, as input arrives (NaN and the infinities are written as null).
            raw = orjson.dumps([base, doc])
            records = fast_records(raw, roster)
            if records is None or records[1] is None:
                continue
            taken_bytes += 1
            decoded = orjson.loads(raw)[1]
            assert records[1] == full(decoded), (name, value)
            assert records[1].raw == (raw, 1) and raw_object(records[1].raw) == decoded
    return accepted, taken, taken_bytes


_FLOATS = {True: ("radius_m", "lat", "lon", "late_after_s"), False: ("lat", "lon", "accuracy_m")}


def test_the_fast_visit_path_accepts_only_what_the_full_checks_accept():
    base = visit(risk_level="high", late_after_s=300, client_phones=["1"], lives_alone=True)
    assert _visit_fast(base) == _visit_checked(base)  # the common record takes it
    fields = [*base, "geofence_radius_m", "status", "contract_id", "missed_after_s",
              "short_long_after_s", "no_checkout_after_s", "nfc_tags",
              "cognitive_impairment", "time_critical", "geofence"]
    accepted, taken, taken_bytes = _one_pass_against_full_checks(
        base, fields, _ODD, _visit_fast, _visit_checked, True)
    # Not vacuous: most records the full checks accept take the fast paths (the rest hold
    # a polygon or two of the same worker).
    assert taken > accepted * 0.8 and taken_bytes > accepted * 0.8, (accepted, taken)


def test_the_fast_event_path_accepts_only_what_the_full_checks_accept():
    values = _ODD + list(METHODS) + ["check_out", "01603 000111", 1_000_000.5]
    for method in METHODS:
        base = event(at=T0, method=method, gateway_id="gw-1")
        assert event_fast(base) == event_checked(base)  # the common event takes it
        fields = [*base, "visit_id", "lat", "lon", "accuracy_m", "caller_number", "tag_id",
                  "gateway_id"]
        accepted, taken, taken_bytes = _one_pass_against_full_checks(
            base, fields, values, event_fast, event_checked, False)
        assert taken > accepted * 0.5 and taken_bytes > accepted * 0.5, \
            (method, accepted, taken, taken_bytes)
    # The null-island fix takes two fields at once.
    island = dict(event(at=T0), lat=0.0, lon=0.0)
    assert event_fast(island) is None and fast_records(orjson.dumps(island), False) == [None]
    assert validate_event(island) == ("invalid_coordinates", "event is the (0, 0) null-island fix")


def test_a_message_the_fast_path_cannot_type_is_left_whole_to_the_full_checks():
    good = visit("v1")
    assert [v.visit_id for v in fast_records(orjson.dumps([good, good]), True)] == ["v1", "v1"]
    # One record with a field of the wrong type: the message is decoded again, record by
    # record, by split_message and the full checks.
    assert fast_records(orjson.dumps([good, dict(good, location="x")]), True) is None
    assert fast_records(orjson.dumps([good, 3]), True) is None
    assert fast_records(b"{not json", True) is None
    assert fast_records(b"", False) is None
    # A single object, not an array: it is record 0, and its raw leads back to it.
    (one,) = fast_records(orjson.dumps(event(at=T0)), False)
    assert one.raw[1] == 0 and raw_object(one.raw)["event_id"] == one.event_id
