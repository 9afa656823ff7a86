"""Person detection with a YOLO model: `detector(image) -> (N, 5) boxes [x1, y1, x2, y2, confidence]`.

Two backends behind one interface, chosen by `load_person_detector` from what DETECTION_MODEL points at:

- `OpenVINODetector` for an exported `*_openvino_model` folder on the CPU (the model Crowd Monitor ships with in
  tests, benchmarks and offline deployments). It runs the network itself with OpenVINO's THROUGHPUT hint: one
  inference stream per core pair, several synchronous requests in flight from several threads at once. Frames of
  different cameras (and the tiles of one crowded frame) are then inferred side by side instead of one after the
  other with all cores on each (ultralytics' LATENCY mode): 1.2-1.4x the frames per second on 2 cores
  (bench/inference_batching.py). Pre- and post-processing are ultralytics' own (letterbox, class filter, NMS at
  IoU 0.7), re-implemented in numpy so that calls are thread-safe; boxes agree with `YOLO.predict` to within a
  pixel (tests/test_yolo.py).
- `UltralyticsDetector` for everything else (.pt weights, a model name to download, other export formats, GPUs):
  ultralytics `predict`, one call at a time (its predictor keeps per-call state, so it is not thread-safe).

Synchronous requests, one per thread, rather than OpenVINO's AsyncInferQueue: ultralytics found the queue can hang
on Intel and AMD CPUs (ultralytics/ultralytics#25923).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

EMPTY = np.zeros((0, 5), dtype=np.float32)
# ultralytics' defaults for `predict`: NMS IoU and the letterbox padding colour.
NMS_IOU = 0.7
PAD_VALUE = 114


class ModelUnavailable(RuntimeError):
    """No usable detection model; the message says why and how to fix it."""


class PersonDetector(Protocol):
    conf: float
    parallel: int  # how many calls can usefully run at the same time (from different threads)

    def __call__(
        self, image: np.ndarray, imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> np.ndarray: ...

    def detect_many(
        self, images: Sequence[np.ndarray], imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> list[np.ndarray]: ...


def load_person_detector(model: str, device: str = "cpu", conf: float = 0.25) -> PersonDetector:
    """The detector for DETECTION_MODEL; raises ModelUnavailable (with what to do) when it cannot be loaded."""
    path = Path(model).expanduser()
    looks_like_path = path.suffix not in ("", ".pt") or "/" in model or path.exists()
    if looks_like_path and not path.exists():
        raise ModelUnavailable(
            f"Detection model {model!r} does not exist. Set DETECTION_MODEL (or --model) to a YOLO model: "
            "a .pt file, an exported *_openvino_model folder, or a model name such as yolov8n.pt to download."
        )
    if device in ("", "cpu") and _openvino_xml(path) is not None:
        try:
            return OpenVINODetector(path, conf=conf)
        except ModelUnavailable:
            raise
        except Exception as exc:
            raise _unavailable(model, exc) from exc
    yolo = _load_ultralytics(model, path, device)
    return UltralyticsDetector(yolo, _person_class(yolo.names, model), conf=conf, device=device)


def _openvino_xml(path: Path) -> Path | None:
    """The network of an OpenVINO export (folder with one .xml and ultralytics' metadata.yaml), else None."""
    if not path.is_dir() or not (path / "metadata.yaml").is_file():
        return None
    networks = sorted(path.glob("*.xml"))
    return networks[0] if len(networks) == 1 else None


def _unavailable(model: str, exc: Exception) -> ModelUnavailable:
    return ModelUnavailable(
        f"Could not load the YOLO model {model!r}: {exc}\n"
        "If this machine is offline, download the weights elsewhere (or export them, e.g. to OpenVINO) and set "
        "DETECTION_MODEL (or --model) to the local file or folder."
    )


def _person_class(names: dict[int, str], model: str) -> int:
    for index, label in names.items():
        if label == "person":
            return int(index)
    raise ModelUnavailable(f"Model {model!r} has no 'person' class; Crowd Monitor needs a people detector.")


def _load_ultralytics(model: str, path: Path, device: str) -> Any:
    from ultralytics import YOLO  # heavy import (torch): only when this backend is wanted

    try:
        yolo = YOLO(str(path) if path.exists() else model, task="detect")
        # Exported models load lazily on the first prediction: fail now, not on the first camera frame.
        yolo.predict(np.zeros((64, 64, 3), dtype=np.uint8), device=device, verbose=False)
    except Exception as exc:
        raise _unavailable(model, exc) from exc
    return yolo


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Grey and BGRA frames as 3-channel BGR (what the detector was trained on)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class UltralyticsDetector:
    """ultralytics `predict` for the person class. One call at a time: the predictor is not thread-safe."""

    parallel = 1

    def __init__(self, yolo: Any, person_class: int, conf: float = 0.25, device: str = "cpu") -> None:
        self.yolo = yolo
        self.person_class = person_class
        self.conf = conf
        self.device = device
        self._lock = threading.Lock()

    def __call__(
        self, image: np.ndarray, imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> np.ndarray:
        with self._lock:
            result = self.yolo.predict(
                image,
                conf=self.conf if conf is None else conf,
                classes=[self.person_class],
                imgsz=imgsz,
                device=self.device,
                max_det=max_det,
                verbose=False,
            )[0]
        if len(result.boxes) == 0:
            return EMPTY.copy()
        xyxy = result.boxes.xyxy.cpu().numpy().astype(np.float32)
        scores = result.boxes.conf.cpu().numpy().astype(np.float32)
        return np.concatenate([xyxy, scores[:, None]], axis=1)

    def detect_many(
        self, images: Sequence[np.ndarray], imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> list[np.ndarray]:
        return [self(image, imgsz, conf, max_det) for image in images]


class OpenVINODetector:
    """A YOLOv8-style OpenVINO export run directly, thread-safe, with several inference requests in flight."""

    def __init__(self, folder: Path, conf: float = 0.25) -> None:
        import openvino as ov
        import yaml
        from openvino.preprocess import ColorFormat, PrePostProcessor

        xml = _openvino_xml(folder)
        if xml is None:
            raise ModelUnavailable(f"{str(folder)!r} is not an OpenVINO export (one .xml and metadata.yaml).")
        metadata = yaml.safe_load((folder / "metadata.yaml").read_text()) or {}
        names = {int(k): str(v) for k, v in (metadata.get("names") or {}).items()}
        self.person_class = _person_class(names, str(folder))
        self.classes = len(names)
        self.conf = conf
        core = ov.Core()
        network = core.read_model(str(xml))
        imgsz = metadata.get("imgsz") or [640, 640]
        self.input_size = int(imgsz[0]) if isinstance(imgsz, list) else int(imgsz)
        if network.input(0).get_partial_shape().is_dynamic:
            network.reshape([1, 3, self.input_size, self.input_size])
        shape = network.input(0).get_shape()
        if shape[0] != 1 or shape[2] != shape[3]:
            raise ModelUnavailable(f"{str(folder)!r}: expected a batch-1 square input, found {list(shape)}.")
        self.input_size = int(shape[2])
        # The network takes the letterboxed BGR frame as it is (uint8, NHWC): the conversion to float RGB in [0, 1],
        # NCHW, runs inside the compiled network, several times cheaper than doing it in Python (cv2.dnn.blobFromImage
        # took 5 ms a frame), with identical outputs.
        ppp = PrePostProcessor(network)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR
        )
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        compiled = core.compile_model(ppp.build(), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
        self.parallel = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests: queue.Queue[Any] = queue.Queue()
        for _ in range(self.parallel):
            self._requests.put(compiled.create_infer_request())
        # Runs the tiles of one crowded frame side by side (detect_many); created on first use.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self(np.zeros((64, 64, 3), dtype=np.uint8))  # fail at load, not on the first camera frame

    def __call__(
        self, image: np.ndarray, imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> np.ndarray:
        if imgsz != self.input_size:
            raise ValueError(f"This OpenVINO export takes {self.input_size} px input, not {imgsz}.")
        image = as_bgr(image)
        padded, scale, left, top = letterbox(image, self.input_size)
        request = self._requests.get()
        try:
            request.infer({0: padded[None]})  # releases the GIL: other threads decode, write or infer meanwhile
            output = request.get_output_tensor(0).data[0].copy()
        finally:
            self._requests.put(request)
        height, width = image.shape[:2]
        return person_boxes(
            output, self.person_class, self.conf if conf is None else conf, max_det, scale, left, top, width, height
        )

    def detect_many(
        self, images: Sequence[np.ndarray], imgsz: int = 640, conf: float | None = None, max_det: int = 300
    ) -> list[np.ndarray]:
        if len(images) <= 1 or self.parallel <= 1:
            return [self(image, imgsz, conf, max_det) for image in images]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="yolo-infer")
        return list(self._pool.map(lambda image: self(image, imgsz, conf, max_det), images))


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """ultralytics' LetterBox: the frame scaled to fit `size` x `size`, centred, padded with grey 114 (uint8 BGR).

    Returns the padded image, the scale and the left / top padding, to map boxes back to the frame.
    """
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = max(round(width * scale), 1), max(round(height * scale), 1)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, scale, left, top


def person_boxes(
    output: np.ndarray,
    person_class: int,
    conf: float,
    max_det: int,
    scale: float,
    left: int,
    top: int,
    width: int,
    height: int,
) -> np.ndarray:
    """A YOLOv8 head's output (4 + classes, anchors) -> person boxes in frame pixels, as ultralytics' NMS gives them.

    Like ultralytics with `classes=[person]`: a candidate's class is its best-scoring one, kept when that is a person
    scoring above `conf`; then NMS at IoU 0.7, at most `max_det` boxes, mapped back through the letterbox. Pure.
    """
    scores = output[4:]
    # Anchors whose person score clears `conf`, then those among them where no other class scores higher.
    candidates = np.flatnonzero(scores[person_class] > conf)
    candidates = candidates[scores[:, candidates].argmax(axis=0) == person_class]
    if candidates.size == 0:
        return EMPTY.copy()
    cx, cy, w, h = output[:4, candidates]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    confidence = scores[person_class, candidates]
    order = nms(boxes, confidence, NMS_IOU)[:max_det]
    boxes, confidence = boxes[order], confidence[order]
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / scale).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / scale).clip(0, height)
    return np.concatenate([boxes, confidence[:, None]], axis=1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; the indices kept, best first. Pure."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        inter = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None) * np.clip(
            np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None
        )
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-7) <= iou]
    return np.asarray(keep, dtype=int)
