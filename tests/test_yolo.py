"""The YOLO person detector: the OpenVINO backend against ultralytics `predict`, thread safety, clear failures.

The product runs exported OpenVINO models itself (detection/yolo.py) so that several frames are inferred side by
side; these tests pin that it sees exactly what ultralytics sees, on real frames with the real model.
"""

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings

from detection.detectors import ModelUnavailable, YoloCounter
from detection.worker import DetectionWorker, camera_feeds
from detection.yolo import (
    OpenVINODetector,
    load_person_detector,
    nms,
    person_boxes,
)
from locations.models import Camera, CrowdLog, Location

SHARED_DATA = Path(settings.BASE_DIR).parent / "shared" / "data"
MODEL = Path(settings.DETECTION_MODEL)
needs_model = pytest.mark.skipif(
    not (MODEL.is_dir() and (MODEL / "metadata.yaml").exists()),
    reason="DETECTION_MODEL is not a local OpenVINO export (scripts/test sets it to ../shared/models)",
)
needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not beside the repo")


def real_frames() -> list[np.ndarray]:
    pets = sorted((SHARED_DATA / "pets09_s2l1" / "images").glob("*.jpg"))[:6]
    mall = sorted((SHARED_DATA / "mall" / "images").glob("*.jpg"))[:4]
    return [cv2.imread(str(p)) for p in pets + mall]


@pytest.fixture(scope="module")
def detector() -> OpenVINODetector:
    loaded = load_person_detector(str(MODEL), "cpu", 0.25)
    assert isinstance(loaded, OpenVINODetector)
    return loaded


@needs_model
@needs_data
def test_openvino_detector_sees_what_ultralytics_predict_sees(detector: OpenVINODetector) -> None:
    from ultralytics import YOLO

    yolo = YOLO(str(MODEL), task="detect")
    for frame in real_frames():
        expected = yolo.predict(frame, classes=[0], conf=0.25, imgsz=640, verbose=False)[0].boxes
        found = detector(frame)
        assert len(found) == len(expected) > 0
        # Same boxes (to within a pixel: INT8 kernels are not bit-exact across thread schedules), same order.
        assert np.abs(found[:, :4] - expected.xyxy.numpy()).max() < 1.5
        assert np.abs(found[:, 4] - expected.conf.numpy()).max() < 0.02


@needs_model
@needs_data
def test_frames_counted_from_several_threads_at_once_get_their_own_boxes(detector: OpenVINODetector) -> None:
    frames = real_frames()
    alone = [detector(frame) for frame in frames]
    together: dict[int, np.ndarray] = {}

    def count(i: int) -> None:
        together[i] = detector(frames[i])

    threads = [threading.Thread(target=count, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert detector.parallel >= 1
    for i, boxes in enumerate(alone):
        assert len(together[i]) == len(boxes)
        assert np.abs(together[i][:, :4] - boxes[:, :4]).max() < 1.5
    # detect_many (the tiles of a crowded frame) returns each image's boxes in the order given.
    many = detector.detect_many(frames)
    assert [len(b) for b in many] == [len(b) for b in alone]


@needs_model
@needs_data
def test_grey_frames_and_a_lower_confidence_are_understood(detector: OpenVINODetector) -> None:
    frame = real_frames()[0]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert abs(len(detector(grey)) - len(detector(frame))) <= 1
    assert len(detector(frame, conf=0.1)) >= len(detector(frame))
    with pytest.raises(ValueError, match="640"):
        detector(frame, imgsz=320)


def test_a_broken_export_is_refused_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "broken_openvino_model"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("names:\n  0: person\nimgsz: [640, 640]\n")
    (folder / "model.xml").write_text("<net>not a network</net>")
    with pytest.raises(ModelUnavailable, match=r"(?s)Could not load the YOLO model.*DETECTION_MODEL"):
        load_person_detector(str(folder))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_person_detector(str(tmp_path / "missing_openvino_model"))


def test_a_model_without_people_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cars_openvino_model"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("names:\n  0: car\n")
    (folder / "model.xml").write_text("")
    with pytest.raises(ModelUnavailable, match="no 'person' class"):
        load_person_detector(str(folder))


def test_person_boxes_keep_people_only_and_suppress_duplicates() -> None:
    # Four anchors of a 3-class head (rows: cx, cy, w, h, person, car, dog), on a 640 px input.
    output = np.array(
        [
            [100, 102, 300, 500],
            [100, 100, 200, 500],
            [40, 40, 40, 40],
            [80, 80, 80, 80],
            [0.9, 0.8, 0.6, 0.1],  # person scores
            [0.1, 0.1, 0.7, 0.1],  # car: wins the third anchor
            [0.0, 0.0, 0.0, 0.2],  # the fourth is nobody above 0.25
        ],
        dtype=np.float32,
    )
    boxes = person_boxes(output, 0, 0.25, 300, scale=0.5, left=0, top=80, width=1280, height=960)
    # The second anchor duplicates the first (IoU > 0.7); the third is a car; the fourth scores too low.
    assert boxes.shape == (1, 5)
    assert boxes[0].tolist() == pytest.approx([160, 0, 240, 120, 0.9])  # mapped back through the letterbox
    assert nms(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32), np.array([0.5, 0.9]), 0.7).tolist() == [
        1,
        0,
    ]


@needs_model
@needs_data
@pytest.mark.django_db(transaction=True)
def test_the_worker_counts_cameras_side_by_side_and_keeps_each_cameras_order() -> None:
    images = SHARED_DATA / "pets09_s2l1" / "images"
    counter = YoloCounter(str(MODEL))
    location = Location.objects.create(name="Concourse", capacity_limit=100)
    cameras = [Camera.objects.create(location=location, name=f"cam {i}", source=str(images)) for i in range(4)]
    worker = DetectionWorker(counter, lambda: camera_feeds(location.pk), 0.0, threading.Event(), report=lambda _: None)
    assert worker.run(cycles=3) == 12
    frames = sorted(p for p in images.iterdir() if p.suffix == ".jpg")
    for camera in cameras:
        logs = list(CrowdLog.objects.filter(camera=camera).order_by("timestamp", "pk"))
        # Each camera read its folder in order, one frame per pass, whatever order the counts finished in.
        assert [log.details["frame_index"] for log in logs] == [0, 1, 2]
        for log in logs:
            expected = counter.count(cv2.imread(str(frames[log.details["frame_index"]]))).count
            assert abs(log.camera_count - expected) <= 1  # INT8 kernels are not bit-exact across thread schedules
