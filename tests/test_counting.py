"""The counting engine (detection/counting) on real crowd images with human counts (../shared/data).

Models come from settings (DETECTION_MODEL, DENSITY_MODEL) or, when those are unset, from ../shared/models; they
are loaded once per session. Tests that need images or weights that are not beside the repo are skipped.
"""

import csv
import json
import threading
from io import StringIO
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from detection.counting import calibration as calib
from detection.counting.density import DensityModel, load_density_model
from detection.counting.engine import (
    CameraProfile,
    CameraState,
    CountingEngine,
    Scene,
    count_frame,
    decide,
    hold_untrusted,
    median_index,
    settle,
)
from detection.counting.slicing import (
    FirstPass,
    SliceConfig,
    choose_grid,
    crowded_view,
    merge,
    mirror,
    pool_views,
    sliced_detect,
)
from detection.counting.zones import boxes_inside, map_mask, parse_zone
from detection.detectors import CountResult, ModelUnavailable, load_counter
from detection.worker import DetectionWorker, Feed
from locations.models import Camera, CrowdLog, Location

SHARED = Path(settings.BASE_DIR).parent / "shared"
DATA = SHARED / "data"
YOLO_MODEL = Path(settings.DETECTION_MODEL)
if not YOLO_MODEL.exists():
    YOLO_MODEL = SHARED / "models" / "yolov8n_int8_openvino_model"
SANET = Path(settings.DENSITY_MODEL or SHARED / "models" / "sanet_shb" / "sanet_shb_keras_layout.npz")
MCNN = SHARED / "models" / "mcnn_shtech" / "mcnn_shtechB.npz"

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real crowd images) is not beside the repo")
needs_yolo = pytest.mark.skipif(not YOLO_MODEL.exists(), reason="no local YOLO model (DETECTION_MODEL/../shared)")
needs_sanet = pytest.mark.skipif(not SANET.is_file(), reason="no SANet weights (DENSITY_MODEL / ../shared/models)")
needs_mcnn = pytest.mark.skipif(not MCNN.is_file(), reason="no MCNN weights in ../shared/models/mcnn_shtech")


def manifest(dataset: str) -> list[tuple[Path, int]]:
    with (DATA / dataset / "manifest.csv").open() as f:
        return [(DATA / dataset / r["image"], int(r["count"])) for r in csv.DictReader(f)]


def image(dataset: str, index: int) -> tuple[np.ndarray, int]:
    path, count = manifest(dataset)[index]
    return cv2.imread(str(path), cv2.IMREAD_COLOR), count


@pytest.fixture(scope="session")
def sanet() -> DensityModel:
    return load_density_model(str(SANET)).models[0]  # the same cached model the commands load


@pytest.fixture(scope="session")
def engine(sanet: DensityModel) -> CountingEngine:
    return CountingEngine(str(YOLO_MODEL), density=sanet)


# --- pure rules ------------------------------------------------------------------------------------------------


def test_untrusted_reading_never_lowers_the_count() -> None:
    assert hold_untrusted(40, saturated=True, previous=90) == 90
    assert hold_untrusted(120, saturated=True, previous=90) == 120  # it may raise it
    assert hold_untrusted(40, saturated=False, previous=90) == 40  # a trusted reading may lower it
    assert hold_untrusted(40, saturated=True, previous=None) == 40


def test_decision_uses_what_the_frame_shows() -> None:
    sparse = decide(Scene(full_count=5, crowded_view=False, detect_count=5, grid=1, density_count=4.2))
    assert (sparse.mode_used, sparse.estimate, sparse.dense, sparse.saturated) == ("detect", 5, False, False)
    assert sparse.low <= 5 <= sparse.high
    crowd = decide(Scene(full_count=3, crowded_view=True, detect_count=40, grid=3, density_count=300))
    assert crowd.mode_used == "density" and crowd.dense and crowd.estimate == 300
    assert crowd.low <= 300 <= crowd.high
    far_crowd = decide(Scene(full_count=1, crowded_view=False, detect_count=1, grid=1, density_count=250))
    assert far_crowd.mode_used == "density"  # the detector saw one person; the density model sees a crowd
    occluded = decide(Scene(full_count=18, crowded_view=True, detect_count=30, grid=3, density_count=9))
    assert occluded.mode_used == "detect" and occluded.estimate == 30  # density under-sees: detection
    blind = decide(Scene(full_count=20, crowded_view=True, detect_count=60, grid=3, density_count=None))
    seen = decide(Scene(full_count=20, crowded_view=True, detect_count=30, grid=3, density_count=None))
    assert seen.mode_used == "detect" and not seen.saturated  # slicing did not double it: detection copes
    assert blind.saturated and blind.high is None and blind.low <= 60  # no density model: a lower bound
    nobody = decide(Scene(full_count=0, crowded_view=False, detect_count=0, grid=2, density_count=None))
    assert nobody.estimate == 0 and not nobody.saturated


def test_slicing_follows_what_the_first_pass_shows() -> None:
    config = SliceConfig()
    empty = np.zeros((0, 5), np.float32)

    def first(count: int, cover: float, person_at_model: float) -> FirstPass:
        return FirstPass(empty, empty, count, cover, person_at_model, person_at_model)

    assert not crowded_view(first(6, 0.03, 70), config)  # a few people, far apart: one pass
    assert crowded_view(first(18, 0.2, 80), config)  # people fill the view: occlusion, look closer
    assert crowded_view(first(3, 0.01, 20), config)  # people tiny at the model input
    assert not crowded_view(first(4, 0.4, 300), config)  # four people close to the camera
    assert choose_grid(640, 480, config) == 3 and choose_grid(480, 360, config) == 2
    assert choose_grid(4000, 3000, config) == config.max_grid


def test_merge_removes_cross_tile_duplicates_but_keeps_neighbours() -> None:
    boxes = np.array(
        [
            [10, 10, 30, 70, 0.9],
            [11, 12, 30, 68, 0.8],  # the same person seen from the next tile
            [12, 30, 30, 70, 0.7],  # its lower part cut by a tile edge
            [40, 10, 60, 70, 0.9],  # a neighbour
        ],
        dtype=np.float32,
    )
    assert len(merge(boxes)) == 2


def test_pooled_views_keep_each_person_once_and_weigh_what_both_views_see() -> None:
    frame = np.array([[10, 10, 30, 70, 0.8], [100, 10, 120, 70, 0.3]])
    mirrored = np.array([[11, 11, 30, 69, 0.6], [200, 10, 220, 70, 0.2]])  # the first person again, and another
    pooled = pool_views([frame, mirrored], floor=0.01)
    expected = [
        [10, 10, 30, 70, 0.7],  # both views: the mean of their confidences
        [100, 10, 120, 70, 0.155],  # the frame only: the mirror counts as the floor
        [200, 10, 220, 70, 0.105],  # the mirror only
    ]
    np.testing.assert_allclose(pooled, expected)
    assert pool_views([np.zeros((0, 5)), np.zeros((0, 5))], floor=0.01).shape == (0, 5)
    assert mirror(frame, 640)[0].tolist() == pytest.approx([610, 10, 630, 70, 0.8])
    np.testing.assert_allclose(mirror(mirror(frame, 640), 640), frame)


def test_zone_keeps_people_whose_feet_are_inside() -> None:
    boxes = np.array([[10, 10, 30, 90, 0.9], [70, 10, 90, 90, 0.9], [45, 0, 55, 40, 0.9]], dtype=np.float32)
    left = parse_zone([[0, 0], [0.5, 0], [0.5, 1], [0, 1]])
    assert boxes_inside(boxes, left, 100, 100).tolist() == [True, False, True]
    assert boxes_inside(boxes, None, 100, 100).all()
    mask = map_mask(left, (10, 20))
    assert mask[:, :10].all() and not mask[:, 10:].any()
    with pytest.raises(ValueError, match="0-1"):
        parse_zone([[0, 0], [640, 0], [640, 480]])


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ([[0, 0], [0.5, 0.5], [1, 1]], "encloses next to no area"),  # on one line
        ([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], "encloses next to no area"),  # one point three times
        ([[0.2, 0.2], [0.2, 0.2], [0.8, 0.8], [0.8, 0.8]], "encloses next to no area"),
        ([[0.5, 0.5], [0.505, 0.5], [0.505, 0.505], [0.5, 0.505]], "encloses next to no area"),  # 0.0025 % of it
        ([[0, 0], [1, 1], [1, 0], [0, 1]], "edges cross each other"),  # corners out of order: a bow tie
        ([[0, 0], [1, 1], [1, 0.2], [0, 0.9]], "edges cross each other"),
    ],
)
def test_a_zone_nobody_could_stand_in_is_refused(zone: list[list[float]], message: str) -> None:
    """Such a zone kept no box, so the camera reported an empty place (LOW) whatever it saw."""
    with pytest.raises(ValueError, match=message):
        parse_zone(zone)


def test_a_small_or_concave_zone_is_a_zone() -> None:
    assert parse_zone([[0.5, 0.5], [0.52, 0.5], [0.52, 0.51], [0.5, 0.51]]) is not None  # 2 % by 1 % of the frame
    assert parse_zone([[0, 0], [1, 0], [1, 1], [0.5, 0.2], [0, 1]]) is not None  # an arrow head, edges not crossing


@pytest.mark.django_db
def test_a_stored_zone_with_no_area_counts_the_whole_frame() -> None:
    """Stored before the rule (the admin form refuses it now): the worker counts the whole frame, as for any zone
    it cannot use, rather than nobody."""
    camera = mall_camera()
    Camera.objects.filter(pk=camera.pk).update(zone=[[0, 0], [0.5, 0.5], [1, 1]])
    assert CameraProfile.load(camera.pk).zone is None


def test_calibration_fits_a_monotone_map_and_cross_validates() -> None:
    raw = np.array([10, 12, 15, 18, 20, 22, 25, 28, 30, 33], dtype=float)
    truth = 1.4 * raw + 2 + np.array([1, -1, 0, 1, -1, 0, 1, -1, 0, 1])
    model = calib.choose(raw, truth, mode="auto")
    assert model.kind in ("scale", "linear", "isotonic")
    assert model.report["cv_mae_after"] < model.report["cv_mae_before"] / 3
    assert model.apply(60) > model.apply(30)  # beyond the fitted range it still grows
    assert calib.Calibration.from_json(model.to_json()).apply(20) == pytest.approx(model.apply(20), abs=1e-3)


def synthetic_frame(rng: np.random.Generator, people: int) -> calib.LabelledFrame:
    """People (boxes on their heads, confidence anywhere from 0.02 to 0.9), each also found a second time by a
    weak box inside its own, plus faint wide boxes on nobody: what a detector gives down to a confidence of 0.01."""
    heads, boxes = [], []
    for _ in range(people):
        x, y, h = rng.uniform(40, 600), rng.uniform(60, 400), rng.uniform(40, 80)
        heads.append([x, y + 0.1 * h])
        boxes.append([x - 0.2 * h, y, x + 0.2 * h, y + h, rng.uniform(0.02, 0.9)])
        boxes.append([x - 0.15 * h, y + 0.3 * h, x + 0.15 * h, y + 0.9 * h, rng.uniform(0.01, 0.05)])
    for _ in range(people // 2):
        x, y = rng.uniform(40, 600), rng.uniform(60, 400)
        boxes.append([x - 40, y, x + 40, y + 30, rng.uniform(0.01, 0.2)])
    return calib.LabelledFrame((np.array(boxes),), np.array(heads), 640, 480)


def test_heads_match_one_box_each_and_a_second_box_on_a_person_stays_unmatched() -> None:
    boxes = np.array(
        [
            [100, 100, 130, 180, 0.9],  # a person: head point (115, 109.6)
            [105, 120, 128, 175, 0.2],  # the same person again, lower and smaller
            [300, 300, 330, 380, 0.5],  # nobody clicked here
        ]
    )
    heads = np.array([[116, 110], [500, 50]])
    assert calib.match_heads(boxes, heads).tolist() == [True, False, False]
    assert calib.match_heads(boxes, np.zeros((0, 2))).tolist() == [False] * 3
    assert calib.match_heads(np.zeros((0, 5)), heads).tolist() == []


def test_box_model_learns_which_boxes_are_people() -> None:
    rng = np.random.default_rng(7)
    model = calib.fit_box_model([synthetic_frame(rng, int(rng.integers(10, 40))) for _ in range(10)])
    errors, raw_errors = [], []
    for _ in range(20):
        frame = synthetic_frame(rng, int(rng.integers(5, 60)))
        errors.append(abs(model.count(frame.views, 640, 480) - len(frame.heads)))
        raw_errors.append(abs(int((frame.boxes[:, 4] >= 0.1).sum()) - len(frame.heads)))
    # A confidence threshold miscounts (weak people lost, faint boxes kept); the model weighs each box instead.
    assert np.mean(errors) < 1.5 < np.mean(raw_errors)
    assert model.missed == 0  # every synthetic person has a box
    stored = calib.Calibration("boxes", "detect", boxes=model).to_json()
    loaded = calib.Calibration.from_json(json.loads(json.dumps(stored)))
    assert loaded is not None and loaded.boxes is not None
    assert loaded.boxes.count(frame.views, 640, 480) == pytest.approx(model.count(frame.views, 640, 480), abs=0.05)
    # A damaged box model is not applied (the camera counts uncalibrated) rather than guessed at.
    for damaged in ({"weights": [1.0]}, [stored["boxes"][0], {"weights": [1.0]}], [], "boxes"):
        assert calib.Calibration.from_json({**stored, "boxes": damaged}) is None, damaged
    # Models stored before mirroring (one object, no "mirrored") keep judging the frame's own boxes, as fitted.
    assert not model.mirrored and len(model.members) == 1
    earlier = {**stored, "boxes": {k: v for k, v in stored["boxes"][0].items() if k not in ("mirrored", "pool_iou")}}
    assert not calib.Calibration.from_json(earlier).boxes.mirrored


def test_a_mirrored_box_model_averages_one_model_per_pooling_overlap() -> None:
    """The frame's boxes and its mirror image's are two views; which of their boxes are one person is a guess at some
    overlap, so one model is fitted per overlap (calib.POOL_IOUS) and the count is the mean of theirs."""
    rng = np.random.default_rng(3)

    def two_views(people: int) -> calib.LabelledFrame:
        frame = synthetic_frame(rng, people)
        # The mirror image finds the same people, a little shifted, with other confidences.
        other = frame.views[0] + np.array([3.0, 2.0, 3.0, 2.0, 0.0])
        other[:, 4] = np.clip(other[:, 4] * rng.uniform(0.5, 1.5, len(other)), 0.01, 0.95)
        return calib.LabelledFrame((frame.views[0], other), frame.heads, 640, 480)

    model = calib.fit_box_model([two_views(int(rng.integers(10, 40))) for _ in range(10)])
    assert model.mirrored and [m.pool_iou for m in model.members] == list(calib.POOL_IOUS)
    frame = two_views(30)
    members = [m.probabilities(m.candidates(frame.views), 640, 480).sum() + m.missed for m in model.members]
    assert members[0] != members[1]  # the overlaps pool different candidates
    assert model.count(frame.views, 640, 480) == pytest.approx(np.mean(members))
    assert abs(model.count(frame.views, 640, 480) - 30) < 3
    stored = json.loads(json.dumps(calib.Calibration("boxes", "detect", boxes=model).to_json()))
    loaded = calib.Calibration.from_json(stored).boxes
    assert loaded.count(frame.views, 640, 480) == pytest.approx(model.count(frame.views, 640, 480), abs=0.05)
    # A mirrored model stored before the overlaps were (one object) judged the views pooled at 0.5, and still does.
    assert calib.Calibration.from_json({**stored, "boxes": {**stored["boxes"][1], "pool_iou": None}}) is None
    earlier = {k: v for k, v in stored["boxes"][1].items() if k != "pool_iou"}
    loaded = calib.Calibration.from_json({**stored, "boxes": earlier}).boxes
    only = model.members[1]
    expected = only.probabilities(pool_views(frame.views, 0.01), 640, 480).sum() + only.missed
    assert loaded.count(frame.views, 640, 480) == pytest.approx(expected, abs=1e-3)


def test_a_head_clicked_a_little_off_its_box_still_labels_it() -> None:
    """Heads are matched nearest first within a box's upper half; the heads left then go to the boxes left under a
    looser rule, stronger boxes first, so a person whose head was clicked low in a box still counts as a person."""
    boxes = np.array(
        [
            [100, 100, 130, 180, 0.9],  # head clicked at its head point
            [200, 100, 230, 180, 0.6],  # head clicked 62 % of the way down: beyond the upper half
            [205, 105, 228, 178, 0.2],  # a weaker box on that same person
            [400, 100, 430, 180, 0.5],  # nobody clicked near it
        ]
    )
    heads = np.array([[115, 110], [215, 150]])
    assert calib.match_heads(boxes, heads).tolist() == [True, True, False, False]


# --- density models on real images -------------------------------------------------------------------------------


@needs_data
@needs_sanet
def test_sanet_count_is_sane_on_a_known_image(sanet: DensityModel) -> None:
    """Guards against the silent 7-9x inflation of a wrong channel order, normalisation or kernel layout."""
    frame, truth = image("shanghaitech_b", 2)
    count = sanet.predict(frame).count
    assert 0.6 * truth <= count <= 1.5 * truth, (count, truth)


@needs_data
@needs_mcnn
def test_mcnn_count_is_sane_and_backends_agree() -> None:
    frame, truth = image("shanghaitech_b", 0)
    frame = cv2.resize(frame, (512, 384))
    ov = DensityModel(MCNN, backend="openvino").predict(frame).count
    pt = DensityModel(MCNN, backend="torch").predict(frame).count
    assert ov == pytest.approx(pt, rel=0.02)
    assert 0.4 * truth <= pt <= 2.5 * truth, (pt, truth)


def test_missing_density_model_is_a_clear_error_not_a_zero() -> None:
    with pytest.raises(ModelUnavailable, match="DENSITY_MODEL"):
        DensityModel("/nowhere/sanet.npz")
    with pytest.raises(CommandError, match="DENSITY_MODEL"):
        call_command("detect_image", str(DATA / "x.jpg"), "--mode", "density", "--density-model", "")


@needs_yolo
def test_density_mode_without_a_model_refuses_to_load() -> None:
    with pytest.raises(ModelUnavailable, match="DENSITY_MODEL"):
        load_counter("density", str(YOLO_MODEL), 0.25, "cpu", density_model="")


# --- the engine on real images -------------------------------------------------------------------------------------


@needs_data
@needs_yolo
@needs_sanet
def test_auto_counts_a_dense_crowd_with_the_density_model(engine: CountingEngine) -> None:
    frame, truth = image("shanghaitech_a", 1)
    result = engine.count(frame)
    assert result.mode_used in ("density", "blend") and result.dense and not result.saturated
    assert "density" in result.estimates
    assert abs(result.count - truth) < 0.5 * truth
    quality = result.details()["quality"]
    assert quality["low"] <= result.count <= quality["high"] and quality["dense"] is True


@needs_data
@needs_yolo
@needs_sanet
def test_auto_counts_a_sparse_scene_by_detection_alone(engine: CountingEngine) -> None:
    frame, truth = image("pets09_s2l1", 5)
    result = engine.count(frame)
    assert result.mode_used == "detect" and not result.dense and not result.saturated
    assert "sliced" not in " ".join(result.notes)  # one full-frame pass: people are large and few
    assert abs(result.count - truth) <= 1 and len(result.boxes) == result.count


@needs_data
@needs_yolo
def test_slicing_finds_more_people_only_where_they_are_small(engine: CountingEngine) -> None:
    dense, dense_truth = image("shanghaitech_b", 1)
    one_pass = sliced_detect(engine.detector, dense, engine.slicing, grid=1)
    sliced = sliced_detect(engine.detector, dense, engine.slicing)
    assert sliced.grid > 1 and sliced.count > one_pass.count * 1.3
    assert sliced.count <= dense_truth * 1.1
    sparse, _ = image("pets09_s2l1", 10)
    one_pass = sliced_detect(engine.detector, sparse, engine.slicing, grid=1)
    sliced = sliced_detect(engine.detector, sparse, engine.slicing)
    assert sliced.count <= one_pass.count


@needs_data
@needs_yolo
def test_zone_excludes_people_outside(engine: CountingEngine) -> None:
    frame, _ = image("pets09_s2l1", 5)
    everyone = engine.count(frame, mode="detect")
    left = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    right = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]
    in_left = engine.count(frame, mode="detect", zone=left)
    in_right = engine.count(frame, mode="detect", zone=right)
    assert everyone.count > 0 and in_left.count + in_right.count == everyone.count
    assert min(in_left.count, in_right.count) < everyone.count
    width = frame.shape[1]
    assert all((x1 + x2) / 2 <= width / 2 for x1, _, x2, *_ in in_left.boxes)


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def write_counts(folder: Path, rows: list[tuple[Path, int]]) -> Path:
    """A calibrate_camera --counts CSV of the rows."""
    counts = folder / "counts.csv"
    counts.write_text("image,count\n" + "".join(f"{p},{c}\n" for p, c in rows))
    return counts


def mall_camera() -> Camera:
    location = Location.objects.create(name="Mall", capacity_limit=100)
    return Camera.objects.create(location=location, name="atrium", source="/dev/null")


@needs_data
@needs_yolo
@needs_sanet
@pytest.mark.django_db
def test_calibration_lowers_the_error_on_held_back_frames(tmp_path: Path) -> None:
    """The density model, trained on street scenes, under-counts this indoor camera: calibration corrects it."""
    rows = manifest("mall")[::12][:8]
    counts = write_counts(tmp_path, rows)
    camera = mall_camera()
    out = StringIO()
    call_command(
        "calibrate_camera",
        str(camera.pk),
        "--counts",
        str(counts),
        "--modes",
        "density",
        "--fit",
        "4",
        "--model",
        str(YOLO_MODEL),
        "--density-model",
        str(SANET),
        stdout=out,
    )
    camera.refresh_from_db()
    stored = camera.calibration
    assert stored["mode"] == "density" == camera.counting_mode
    assert stored["n_fit"] == 4 and stored["n_heldout"] == 4
    assert stored["heldout_mae_after"] < stored["heldout_mae_before"] / 2, out.getvalue()


@needs_data
@needs_yolo
@needs_sanet
@pytest.mark.django_db
def test_clicked_heads_fit_a_box_model_that_the_worker_applies(tmp_path: Path, engine: CountingEngine) -> None:
    """The Mall counter is unbiased, so no map from its count helps; the heads clicked on 10 frames teach it which
    of its boxes are people on this camera, and the error on the held-back frames drops."""
    rows = manifest("mall")[::2]
    points = json.loads((DATA / "mall" / "points.json").read_text())
    counts = write_counts(tmp_path, rows)
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({str(p): points[f"images/{p.name}"] for p, _ in rows}))
    camera = mall_camera()
    out = StringIO()
    call_command(
        "calibrate_camera",
        str(camera.pk),
        *("--counts", str(counts), "--heads", str(heads), "--modes", "detect", "--fit", "10"),
        *("--model", str(YOLO_MODEL)),
        stdout=out,
    )
    camera.refresh_from_db()
    stored = camera.calibration
    assert (stored["kind"], stored["mode"], camera.counting_mode) == ("boxes", "detect", "detect"), out.getvalue()
    assert stored["n_fit"] == 10 and stored["n_heldout"] == len(rows) - 10
    assert stored["heldout_mae_after"] < 0.95 * stored["heldout_mae_before"], out.getvalue()

    # The worker's path: the camera's profile, its box model applied while counting.
    profile = CameraProfile.load(camera.pk)
    assert profile.calibration is not None and profile.calibration.boxes is not None
    frame = cv2.imread(str(rows[1][0]))
    result = count_frame(engine, frame, profile)
    boxes = profile.calibration.boxes
    assert boxes.mirrored  # fitted on, and judging, the frame's boxes pooled with its mirror image's
    views, _ = engine.candidate_views(frame, None, boxes.floor, mirrored=True)
    assert len(boxes.members) == len(calib.POOL_IOUS) and result.count == round(boxes.count(views, 640, 480))
    assert "calibrated (boxes)" in result.notes and result.requested_mode == "detect"
    assert result.low < result.count < result.high
    # With the worker forced to another mode the box model (fitted on detect boxes) does not apply.
    engine.forced = True
    try:
        assert "calibrated (boxes)" not in count_frame(engine, frame, profile).notes
    finally:
        engine.forced = False


@needs_data
@needs_yolo
def test_the_mirror_image_finds_people_the_frame_misses(engine: CountingEngine) -> None:
    """YOLO is not symmetric: on the mirror image it finds some of the half-hidden people it misses on the frame."""
    points = json.loads((DATA / "mall" / "points.json").read_text())
    found = {False: 0, True: 0}
    for path, count in manifest("mall")[:6]:
        frame = cv2.imread(str(path))
        heads = np.array(points[f"images/{path.name}"])
        assert len(heads) == count
        for mirrored in found:
            views, _ = engine.candidate_views(frame, None, calib.BOX_FLOOR, mirrored)
            found[mirrored] += int(calib.match_heads(calib.pooled(views), heads).sum())
    assert found[True] > found[False]


@needs_data
@needs_yolo
@pytest.mark.django_db
def test_heads_that_do_not_cover_every_frame_fit_no_box_model(tmp_path: Path) -> None:
    rows = manifest("mall")[:4]
    points = json.loads((DATA / "mall" / "points.json").read_text())
    counts = write_counts(tmp_path, rows)
    heads = {str(p): points[f"images/{p.name}"] for p, _ in rows}
    heads[str(rows[0][0])] = heads[str(rows[0][0])][:3]  # a count typed, three heads clicked
    heads_file = tmp_path / "heads.json"
    heads_file.write_text(json.dumps(heads))
    camera = mall_camera()
    command = ("calibrate_camera", str(camera.pk), "--counts", str(counts), "--model", str(YOLO_MODEL))
    out, terminal = StringIO(), Terminal()
    call_command(*command, "--heads", str(heads_file), "--modes", "detect", stdout=out, stderr=terminal)
    assert f"No box model: {rows[0][0].name} has 3 clicked head(s) for a count of {rows[0][1]}" in out.getvalue()
    # Progress on a terminal only: the admin page reads the summary.
    assert "\r  1/4 frames counted" in terminal.getvalue() and "\r  4/4 frames counted" in terminal.getvalue()
    assert "frames counted" not in out.getvalue()
    camera.refresh_from_db()
    assert camera.calibration["kind"] != "boxes"

    with pytest.raises(CommandError, match="not a readable JSON"):
        call_command(*command, "--heads", str(tmp_path / "missing.json"), "--modes", "detect")
    with pytest.raises(CommandError, match="include detect"):
        call_command(*command, "--heads", str(heads_file), "--modes", "auto")
    with pytest.raises(CommandError, match="--folds must be at least 2"):  # 0 folds used to report an error of nan
        call_command(*command, "--folds", "0", "--modes", "detect")


@needs_data
@needs_yolo
@pytest.mark.django_db
def test_calibrating_a_camera_whose_zone_has_no_area_says_so(tmp_path: Path) -> None:
    camera = mall_camera()
    Camera.objects.filter(pk=camera.pk).update(zone=[[0, 0], [0.5, 0.5], [1, 1]])  # stored before the rule
    counts = write_counts(tmp_path, manifest("mall")[:3])
    command = ("calibrate_camera", str(camera.pk), "--counts", str(counts), "--model", str(YOLO_MODEL))
    with pytest.raises(CommandError, match="zone is not valid: The zone encloses"):
        call_command(*command, "--modes", "detect")


@needs_data
@needs_yolo
@pytest.mark.django_db(transaction=True)
def test_worker_applies_zone_calibration_and_the_untrusted_rule(engine: CountingEngine) -> None:
    path, _ = manifest("pets09_s2l1")[5]
    location = Location.objects.create(name="Walkway", capacity_limit=20)
    camera = Camera.objects.create(
        location=location,
        name="cam",
        source=str(path),
        counting_mode="detect",
        zone=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]],
        calibration={"kind": "scale", "mode": "detect", "a": 2.0},
    )
    frame = cv2.imread(str(path))
    in_zone = engine.count(frame, mode="detect", zone=camera.zone).count
    worker = DetectionWorker(engine, lambda: [Feed(location.pk, camera.source, camera.pk)], 0.01, threading.Event())
    assert worker.run(cycles=1) == 1
    log = CrowdLog.objects.get(camera=camera)
    assert log.count == 2 * in_zone
    assert log.details["quality"]["mode_used"] == "detect"
    assert "calibrated (scale)" in log.details["quality"]["notes"]

    # A saturated (untrusted) low reading holds the previous count.
    class Blind:
        name = "blind"

        def count(self, image: np.ndarray) -> CountResult:
            return CountResult(3, saturated=True, mode_used="detect", requested_mode="blind")

    state = CameraState(previous=50)
    assert settle(count_frame(Blind(), frame, CameraProfile()), state, smooth=1).count == 50

    # Stable counts: the median of the last readings of a camera.
    class Steady:
        name = "steady"
        counts = iter([10, 30, 11, 12])

        def count(self, image: np.ndarray) -> CountResult:
            return CountResult(next(self.counts))

    state = CameraState()
    readings = [settle(count_frame(Steady(), frame, CameraProfile()), state, smooth=3) for _ in range(4)]
    assert [r.count for r in readings] == [10, 20, 11, 12]


@needs_data
@needs_yolo
@pytest.mark.django_db(transaction=True)
def test_a_camera_with_a_malformed_calibration_is_counted_uncalibrated(engine: CountingEngine) -> None:
    """A calibration the counter cannot apply (written by SQL or an older version; the admin form refuses it) used
    to stop run_detection, and every camera with it. Now that camera counts its raw estimate, and the others too."""
    path, _ = manifest("pets09_s2l1")[5]
    location = Location.objects.create(name="Walkway", capacity_limit=200)
    good = Camera.objects.create(
        location=location,
        name="good",
        source=str(path),
        counting_mode="detect",
        calibration={"kind": "scale", "mode": "detect", "a": 2.0},
    )
    bad = Camera.objects.create(location=location, name="bad", source=str(path), counting_mode="detect")
    Camera.objects.filter(pk=bad.pk).update(calibration={"kind": "isotonic", "x": ["a"], "y": ["b"]})
    raw = engine.count(cv2.imread(str(path)), mode="detect").count
    assert raw > 0
    feeds = [Feed(location.pk, camera.source, camera.pk) for camera in (good, bad)]
    worker = DetectionWorker(engine, lambda: feeds, 0.01, threading.Event())
    assert worker.run(cycles=1) == 2
    assert CrowdLog.objects.get(camera=good).camera_count == 2 * raw
    log = CrowdLog.objects.get(camera=bad)
    assert log.camera_count == raw
    assert not any("calibrated" in note for note in log.camera_quality["notes"])


def test_calibration_from_json_refuses_what_the_counter_cannot_apply() -> None:
    for stored in (
        {"kind": "scale", "a": "abc"},
        {"kind": "linear", "a": None},
        {"kind": "scale", "a": 0},
        {"kind": "scale", "a": float("inf")},
        {"kind": "isotonic", "x": 5, "y": [1]},
        {"kind": "isotonic", "x": [1, 2], "y": [1]},
        {"kind": "isotonic", "x": ["a"], "y": ["b"]},
        {"kind": "zzz"},
        {"kind": "scale", "a": 2.0, "mode": "detcet"},
        {"kind": "scale", "a": 2.0, "mode": None},
        "scale",
    ):
        assert calib.Calibration.from_json(stored) is None, stored
        with pytest.raises(calib.CalibrationError):
            calib.Calibration.parse(stored)
    assert calib.Calibration.from_json({}) is None and calib.Calibration.parse({}) is None  # none stored
    isotonic = calib.Calibration.parse({"kind": "isotonic", "x": [0, 10], "y": [0, 20]})
    assert isotonic is not None and isotonic.apply(5) == 10


def test_a_reading_of_several_frames_keeps_the_median_one() -> None:
    def results(*counts: int) -> list[CountResult]:
        return [CountResult(count) for count in counts]

    assert median_index(results(7)) == 0
    assert median_index(results(30, 2, 31)) == 0  # one frame with people hidden does not pull the reading down
    assert median_index(results(12, 60, 11)) == 0  # nor one with people doubled up
    assert median_index(results(9, 4, 12, 10)) == 0  # of an even number, the lower middle one: 9
