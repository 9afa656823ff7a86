"""A location watched by several cameras: its count is the sum of each enabled camera's newest count.

Before this, every camera reading replaced the location's count, so a concourse seen by two cameras showed whichever
counted last: half the crowd, and an 80 % alert that never fired.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert
from locations.aggregation import CameraPart, combine
from locations.models import Camera, CameraCount, CrowdLog, Location
from locations.services import NewReading, record_reading, record_readings

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
STALE = timedelta(seconds=15)


def judged(mode: str, low: float | None, high: float | None, **flags: bool) -> dict[str, Any]:
    return {"mode_used": mode, "low": low, "high": high, "dense": False, "saturated": False, **flags}


# --- the pure rule ----------------------------------------------------------------------------------------------------


def test_the_sum_of_fresh_cameras_with_their_intervals_added() -> None:
    total = combine(
        [
            CameraPart(1, 40, T0, judged("detect", 38, 44)),
            CameraPart(2, 25, T0 - timedelta(seconds=5), judged("detect", 22.5, 30)),
        ],
        T0,
        STALE,
    )
    assert total.count == 65
    assert total.quality is not None
    assert (total.quality["mode_used"], total.quality["low"], total.quality["high"]) == ("detect", 60.5, 74.0)
    assert not total.quality["saturated"] and not total.quality["dense"]
    assert (total.cameras, total.held) == ({"1": 40, "2": 25}, [])


def test_a_camera_that_stopped_counting_keeps_its_count_in_the_sum_but_not_in_the_interval() -> None:
    total = combine(
        [CameraPart(1, 40, T0, judged("detect", 38, 44)), CameraPart(2, 90, T0 - timedelta(minutes=5))],
        T0,
        STALE,
    )
    assert total.count == 130  # never lowered because part of the place went unseen
    assert total.quality is not None
    assert total.quality["low"] == 38.0 and total.quality["high"] is None  # its people may have left, or doubled
    assert any("camera 2: count held" in note for note in total.quality["notes"])
    assert (total.cameras, total.held) == ({"1": 40, "2": 90}, [2])


def test_a_saturated_or_dense_camera_makes_the_sum_so_and_mixed_modes_are_a_blend() -> None:
    total = combine(
        [
            CameraPart(1, 56, T0, judged("detect", 48, None, saturated=True)),
            CameraPart(2, 300, T0, judged("density", 250, 360, dense=True)),
        ],
        T0,
        STALE,
    )
    assert total.count == 356
    assert total.quality is not None
    assert total.quality["mode_used"] == "blend"
    assert total.quality["saturated"] and total.quality["dense"]
    assert total.quality["low"] == 298.0 and total.quality["high"] is None


def test_counts_without_a_judgement_sum_without_one() -> None:
    total = combine([CameraPart(1, 3, T0), CameraPart(2, 4, T0)], T0, STALE)
    assert (total.count, total.quality) == (7, None)


def test_a_judged_camera_beside_an_unjudged_one_takes_the_others_count_as_exact() -> None:
    total = combine([CameraPart(1, 10, T0, judged("detect", 8, 12)), CameraPart(2, 4, T0)], T0, STALE)
    assert total.quality is not None
    assert (total.quality["low"], total.quality["high"]) == (12.0, 16.0)


# --- the write path ---------------------------------------------------------------------------------------------------


@pytest.fixture
def concourse() -> Location:
    return Location.objects.create(name="Concourse", capacity_limit=100, expected_interval_seconds=5)


def camera(location: Location, name: str, **fields: Any) -> Camera:
    return Camera.objects.create(location=location, name=name, source="/dev/null", **fields)


def fresh(location: Location) -> Location:
    return Location.objects.get(pk=location.pk)


def read(location: Location, cam: Camera, count: int, at: datetime | None = None, **details: Any) -> CrowdLog:
    return record_reading(location, count, source="camera", camera_id=cam.pk, at=at, details=details or None)


@pytest.mark.django_db
def test_two_cameras_add_up_and_the_sum_raises_the_alert(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    read(concourse, north, 45)
    read(concourse, south, 40)
    state = fresh(concourse)
    assert (state.current_count, state.occupancy_percentage, state.density_level) == (85, 85.0, "HIGH")
    # 85 people in a place for 100: neither camera alone sees 80.
    assert Alert.objects.filter(location=concourse, kind="OVERCROWDING", status="ACTIVE").exists()

    read(concourse, north, 30)  # people leave the north side; the south camera's 40 still stand
    assert fresh(concourse).current_count == 70
    logs = list(CrowdLog.objects.filter(location=concourse).order_by("id").values_list("camera__name", "count"))
    assert logs == [("North", 45), ("South", 85), ("North", 70)]  # the history holds the location's figures
    newest = CrowdLog.objects.filter(location=concourse).order_by("-id").first()
    assert newest is not None
    assert newest.details["cameras"] == {str(north.pk): 30, str(south.pk): 40}
    assert dict(CameraCount.objects.values_list("camera__name", "count")) == {"North": 30, "South": 40}


@pytest.mark.django_db
def test_the_readings_quality_describes_the_sum_and_keeps_the_cameras_own(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    read(concourse, north, 20, quality=judged("detect", 18, 23))
    read(concourse, south, 30, quality=judged("detect", 27, 36))
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("admin", password="x"))
    newest = client.get(f"/api/locations/{concourse.pk}/readings/").json()["results"][0]
    assert newest["count"] == 50
    assert (newest["quality"]["low"], newest["quality"]["high"]) == (45.0, 59.0)
    # Each camera's own figures stay its own: what the location page shows under that camera's frame.
    cameras = {c["name"]: c for c in client.get(f"/api/cameras/?location={concourse.pk}").json()["results"]}
    assert (cameras["North"]["count"], cameras["South"]["count"]) == (20, 30)
    assert cameras["South"]["counted_at"] is not None
    assert CrowdLog.objects.get(camera=south).camera_quality["low"] == 27
    assert CrowdLog.objects.get(camera=north).camera_quality["low"] == 18


@pytest.mark.django_db
def test_a_single_camera_location_is_unchanged(concourse: Location) -> None:
    only = camera(concourse, "Only")
    log = read(concourse, only, 12, boxes=[[1, 2, 3, 4, 0.9]])
    assert fresh(concourse).current_count == 12
    assert log.details == {"boxes": [[1, 2, 3, 4, 0.9]]}


@pytest.mark.django_db
def test_a_disabled_camera_leaves_the_sum(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    read(concourse, north, 45)
    read(concourse, south, 40)
    Camera.objects.filter(pk=south.pk).update(enabled=False)
    read(concourse, north, 46)
    assert fresh(concourse).current_count == 46


@pytest.mark.django_db
def test_a_camera_joining_the_count_is_not_a_spike_but_a_later_surge_is(concourse: Location) -> None:
    """A second camera installed at a place that had one: the count jumps from 20 to 45 because more of the place is
    seen. That is not people arriving, so it must not page anyone as a SPIKE."""
    north = camera(concourse, "North")
    now = timezone.now()
    read(concourse, north, 20, at=now - timedelta(seconds=20))
    south = camera(concourse, "South")
    read(concourse, south, 25, at=now - timedelta(seconds=15))
    read(concourse, north, 21, at=now - timedelta(seconds=10))
    assert fresh(concourse).current_count == 46
    assert not Alert.objects.filter(kind="SPIKE").exists()
    # People do arrive: 46 -> 66 within the window is a spike, judged from the joint count.
    read(concourse, south, 45, at=now)
    assert Alert.objects.filter(location=concourse, kind="SPIKE").exists()


@pytest.mark.django_db
def test_a_camera_enabled_again_brings_no_old_count_back(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 20, at=now - timedelta(minutes=10))
    read(concourse, south, 30, at=now - timedelta(minutes=10))
    Camera.objects.filter(pk=south.pk).update(enabled=False)
    read(concourse, north, 21, at=now - timedelta(minutes=5))
    Camera.objects.filter(pk=south.pk).update(enabled=True)
    read(concourse, north, 22, at=now - timedelta(seconds=10))
    assert fresh(concourse).current_count == 22  # not 22 + the 30 from before it was disabled
    read(concourse, south, 31, at=now)
    assert fresh(concourse).current_count == 53
    assert not Alert.objects.filter(kind="SPIKE").exists()


@pytest.mark.django_db
def test_a_camera_gone_quiet_keeps_its_count_held(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, south, 60, at=now - timedelta(minutes=2))
    read(concourse, north, 10, at=now)
    assert fresh(concourse).current_count == 70
    newest = CrowdLog.objects.filter(camera=north).get()
    assert newest.details["held"] == [south.pk]


@pytest.mark.django_db
def test_a_camera_moved_elsewhere_takes_nothing_along(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    read(concourse, north, 45)
    read(concourse, south, 40)
    platform = Location.objects.create(name="Platform", capacity_limit=100)
    Camera.objects.filter(pk=south.pk).update(location=platform)
    read(concourse, north, 44)
    assert fresh(concourse).current_count == 44  # the south camera's 40 no longer stand here
    read(platform, Camera.objects.get(pk=south.pk), 7)
    assert fresh(platform).current_count == 7


@pytest.mark.django_db
def test_a_late_camera_reading_does_not_replace_its_newer_count(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 45, at=now - timedelta(seconds=2))
    read(concourse, south, 40, at=now - timedelta(seconds=1))
    late = read(concourse, north, 5, at=now - timedelta(seconds=30))  # a spooled reading flushed late
    assert late.count == 45  # the history's figure: then, with the south camera as it stands
    assert fresh(concourse).current_count == 85
    read(concourse, south, 41, at=now)
    assert fresh(concourse).current_count == 86  # the north camera's newest count, not the late one


@pytest.mark.django_db
def test_cameras_written_together_add_up_in_order(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    logs = record_readings(
        [
            NewReading(concourse.pk, 45, "camera", north.pk, now - timedelta(seconds=3), key="a"),
            NewReading(concourse.pk, 40, "camera", south.pk, now - timedelta(seconds=2), key="b"),
            NewReading(concourse.pk, 47, "camera", north.pk, now - timedelta(seconds=1), key="c"),
        ]
    )
    assert [log.count for log in logs] == [45, 85, 87]
    assert fresh(concourse).current_count == 87


@pytest.mark.django_db
def test_a_reading_pushed_over_the_api_is_the_whole_locations_count(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    read(concourse, north, 45)
    read(concourse, south, 40)
    record_reading(concourse, 30, source="api")  # a turnstile total, say
    assert fresh(concourse).current_count == 30
    assert CameraCount.objects.get(camera=north).count == 45  # the cameras' parts are theirs


@pytest.mark.django_db(transaction=True)  # the foreign key is checked at commit
def test_a_reading_from_a_camera_deleted_meanwhile_is_still_stored(concourse: Location) -> None:
    gone = camera(concourse, "Gone")
    gone_id = gone.pk
    gone.delete()
    # It used to fail the whole write (with every other camera's readings in it) on the foreign key.
    log = record_reading(concourse, 9, source="camera", camera_id=gone_id)
    assert CrowdLog.objects.get(pk=log.pk).camera_id is None
    assert fresh(concourse).current_count == 9


@pytest.mark.django_db
def test_a_count_taken_a_moment_before_another_cameras_still_counts(concourse: Location) -> None:
    """The worker samples cameras in parallel: the south camera's frame may be taken just before the north one's
    yet written just after it. It is the south camera's newest count all the same."""
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 45, at=now)
    read(concourse, south, 40, at=now - timedelta(milliseconds=300))
    state = fresh(concourse)
    assert (state.current_count, state.last_reading_at) == (85, now)
    assert Alert.objects.filter(location=concourse, kind="OVERCROWDING").exists()
    assert not Alert.objects.filter(kind="SPIKE").exists()  # 45 -> 85 only because the south side is now seen


@pytest.mark.django_db
def test_admin_lists_each_cameras_part(concourse: Location, client: Any) -> None:
    north = camera(concourse, "North")
    camera(concourse, "South")  # not counted yet
    read(concourse, north, 45)
    client.force_login(User.objects.create_superuser("admin", password="x"))
    page = client.get("/admin/locations/camera/").content.decode()
    assert "Newest count" in page and "45 at " in page and "not yet counted" in page
    assert client.get("/admin/locations/camera/add/").status_code == 200
    assert "45 at " in client.get(f"/admin/locations/camera/{north.pk}/change/").content.decode()


@pytest.mark.django_db
def test_the_readings_api_says_what_each_camera_added(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, south, 60, at=now - timedelta(minutes=2))
    read(concourse, north, 10, at=now - timedelta(seconds=1))
    record_reading(concourse, 75, source="api", at=now)  # a turnstile total, say
    client = APIClient()
    client.force_authenticate(User.objects.create_user("viewer"))
    pushed, summed, alone = client.get(f"/api/locations/{concourse.pk}/readings/").json()["results"]

    assert (summed["count"], summed["camera_id"], summed["camera_count"]) == (70, north.pk, 10)
    assert sorted(summed["cameras"], key=lambda part: part["count"]) == [
        {"camera_id": north.pk, "count": 10, "held": False},
        {"camera_id": south.pk, "count": 60, "held": True},  # counted two minutes before: kept in the sum
    ]
    assert (alone["count"], alone["camera_count"], alone["cameras"]) == (
        60,
        60,
        [{"camera_id": south.pk, "count": 60, "held": False}],
    )
    assert (pushed["count"], pushed["camera_count"], pushed["cameras"]) == (75, None, [])


@pytest.mark.django_db
def test_each_reading_keeps_what_its_camera_counted(concourse: Location) -> None:
    north, south = camera(concourse, "North"), camera(concourse, "South")
    alone = read(concourse, north, 45)
    summed = read(concourse, south, 40)
    assert (alone.count, alone.camera_count) == (45, 45)
    assert (summed.count, summed.camera_count) == (85, 40)
    assert record_reading(concourse, 30, source="api").camera_count == 30


@pytest.mark.django_db
def test_a_surge_written_together_with_a_camera_joining_after_it_is_still_a_spike(concourse: Location) -> None:
    """The worker writes what its cameras counted since its last write together: a surge on the north side and,
    a moment later, a new south camera's first count. Only the south camera's joining is not a spike."""
    north = camera(concourse, "North")
    now = timezone.now()
    read(concourse, north, 20, at=now - timedelta(seconds=15))  # the north camera joins
    read(concourse, north, 20, at=now - timedelta(seconds=10))
    south = camera(concourse, "South")
    record_readings(
        [
            NewReading(concourse.pk, 40, "camera", north.pk, now - timedelta(seconds=5)),  # 20 -> 40: people came
            NewReading(concourse.pk, 10, "camera", south.pk, now - timedelta(seconds=4)),
        ]
    )
    assert fresh(concourse).current_count == 50
    assert Alert.objects.filter(location=concourse, kind="SPIKE").exists()


@pytest.mark.django_db(transaction=True)  # the foreign key is checked at commit
def test_a_reading_from_a_camera_deleted_meanwhile_is_not_the_whole_locations_count(concourse: Location) -> None:
    """The worker was counting the south camera when an admin deleted it: its last reading is not a sensor total
    pushed over the API, and must not make the location look as empty as that one camera's view."""
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 70, at=now - timedelta(seconds=2))
    read(concourse, south, 10, at=now - timedelta(seconds=1))
    south_id = south.pk
    south.delete()
    log = record_reading(concourse, 12, source="camera", camera_id=south_id, at=now)
    assert log.camera_id is None
    assert log.count == 82  # what the place held when the south camera counted: its 12 and the north side's 70
    assert fresh(concourse).current_count == 82
    assert not CameraCount.objects.filter(camera_id=south_id).exists()
    read(concourse, north, 71)
    assert fresh(concourse).current_count == 71  # the deleted camera is out of the sum from then on


@pytest.mark.django_db
def test_a_reading_from_a_camera_disabled_meanwhile_does_not_join_the_count_again(concourse: Location) -> None:
    """Disabling a camera takes it out of the sum; a reading it took just before (in flight, or spooled) is stored
    with the sum as it stood, but does not bring the camera back into the count nor reset the spike window."""
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 20, at=now - timedelta(seconds=30))
    read(concourse, south, 10, at=now - timedelta(seconds=29))
    Camera.objects.filter(pk=south.pk).update(enabled=False)
    read(concourse, north, 20, at=now - timedelta(seconds=20))
    joined = fresh(concourse).cameras_changed_at
    late = read(concourse, south, 11, at=now - timedelta(seconds=19))
    assert late.camera_id == south.pk and late.count == 31
    assert fresh(concourse).cameras_changed_at == joined
    assert not CameraCount.objects.filter(camera=south).exists()
    read(concourse, north, 40, at=now - timedelta(seconds=10))  # 20 -> 40: people came
    assert fresh(concourse).current_count == 40  # not 40 + the disabled camera's 11
    assert Alert.objects.filter(location=concourse, kind="SPIKE").exists()


@pytest.mark.django_db
def test_a_cameras_spooled_count_flushed_late_is_not_a_spike(concourse: Location) -> None:
    """The south camera's worker lost the database for ten minutes while the north camera's went on: the crowd grew
    slowly from 20 to 60. South's spooled count from then is its newest and joins the sum as it stands now (60), but
    comparing that with what the place held ten minutes ago (20) is no surge."""
    north, south = camera(concourse, "North"), camera(concourse, "South")
    now = timezone.now()
    read(concourse, north, 10, at=now - timedelta(seconds=610))
    read(concourse, south, 10, at=now - timedelta(seconds=600))
    read(concourse, north, 10, at=now - timedelta(seconds=595))  # 20
    read(concourse, north, 30, at=now - timedelta(seconds=300))  # 40, five minutes later
    read(concourse, north, 50, at=now - timedelta(seconds=5))  # 60, five minutes later
    assert not Alert.objects.filter(kind="SPIKE").exists()
    spooled = read(concourse, south, 10, at=now - timedelta(seconds=590))
    assert spooled.count == 60
    assert fresh(concourse).current_count == 60
    assert not Alert.objects.filter(kind="SPIKE").exists()


@pytest.mark.django_db(transaction=True)  # migrates the test database back and forth
def test_the_upgrade_to_summed_cameras_does_not_page_a_spike() -> None:
    """Before the upgrade a location's count was whichever camera counted last (45, 40, 45, ...). The first reading
    after it is the sum (86): more of the place is seen, nobody came. Readings spooled during the deploy are flushed
    within the spike window of those from before it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("locations", "0006_location_setting_seconds_limit")], [("locations", "0007_camera_count")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    now = timezone.now()
    place = old.get_model("locations", "Location").objects.create(
        name="Concourse", capacity_limit=200, expected_interval_seconds=5, last_reading_at=now - timedelta(seconds=5)
    )
    cams = [
        old.get_model("locations", "Camera").objects.create(location=place, name=name, source="/dev/null")
        for name in ("North", "South")
    ]
    old.get_model("locations", "CrowdLog").objects.bulk_create(
        old.get_model("locations", "CrowdLog")(
            location=place,
            camera=cams[i % 2],
            source="camera",
            count=(45, 40)[i % 2],
            capacity_limit=200,
            occupancy_percentage=(22.5, 20.0)[i % 2],
            density_level="LOW",
            timestamp=now - timedelta(seconds=5 * (6 - i)),
        )
        for i in range(6)
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    log = record_reading(Location.objects.get(pk=place.pk), 46, source="camera", camera_id=cams[0].pk, at=now)
    assert log.count == 86
    assert not Alert.objects.filter(kind="SPIKE").exists()
