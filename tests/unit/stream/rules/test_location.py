"""location_mismatch and location_unverified: a fix against its fence, a caller's
number, a tag (stream/rules/location.py)."""


from tests.factories import T0, event, north_of_home, visit
from tests.unit.stream.harness import Harness


def _kinds(h):
    return [(e["kind"], e["status"]) for e in h.escalations]


def test_gps_check_in_far_outside_is_a_location_mismatch():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(1000)
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=10))
    esc = h.by_id("v1:location_mismatch")
    assert esc["evidence"]["distance_to_fence_m"] == 800.0
    assert esc["evidence"]["margin_m"] == 16.2
    assert esc["recommended_route"] == "review"


def test_gps_poor_accuracy_near_boundary_is_unverified_not_mismatch():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(260)  # 60 m outside a 200 m fence
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=80))  # 95% radius ~130 m
    assert _kinds(h) == [("location_unverified", "open")]
    assert h.by_id("v1:location_unverified")["evidence"]["reason"] == "accuracy_too_poor"


def test_gps_inside_raises_nothing_and_missing_accuracy_is_assumed():
    h = Harness()
    h.roster(visit())
    lat, lon = north_of_home(20)
    h.events(event(at=T0, lat=lat, lon=lon, accuracy_m=None))
    assert h.escalations == []


def test_polygon_geofence_with_hole():
    lat0, lon0 = north_of_home(0)
    d = 0.002
    outer = [[lon0 - d, lat0 - d], [lon0 + d, lat0 - d], [lon0 + d, lat0 + d],
             [lon0 - d, lat0 + d], [lon0 - d, lat0 - d]]
    h = 0.0005
    hole = [[lon0 - h, lat0 - h], [lon0 - h, lat0 + h], [lon0 + h, lat0 + h],
            [lon0 + h, lat0 - h], [lon0 - h, lat0 - h]]
    hn = Harness()
    hn.roster(visit(geofence={"type": "Polygon", "coordinates": [outer, hole]}))
    hn.events(event(at=T0, lat=lat0, lon=lon0, accuracy_m=5))  # in the hole: outside
    assert _kinds(hn) == [("location_mismatch", "open")]
    assert hn.by_id("v1:location_mismatch")["evidence"]["fence"] == "polygon"


def test_telephony_from_unknown_number_is_unverified():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, method="telephony", caller_number="07700 900123"))
    assert h.by_id("v1:location_unverified")["evidence"]["reason"] == "caller_not_on_roster"


def test_telephony_from_client_landline_in_another_format_is_verified():
    h = Harness()
    h.roster(visit())
    h.events(event(at=T0, method="telephony", caller_number="01603-000-111"))
    assert h.escalations == []


def test_unknown_nfc_tag_is_unverified_and_known_tag_is_fine():
    h = Harness()
    h.roster(visit(), visit("v2", client_id="c2"))
    h.events(event(at=T0, method="nfc", tag_id="tag-9"),
             event(at=T0, method="qr", tag_id="tag-1", visit_id="v2", client_id="c2"))
    assert [e["escalation_id"] for e in h.escalations] == ["v1:location_unverified"]
