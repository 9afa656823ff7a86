#!/usr/bin/env python
"""Does batching several cameras' frames into one inference help on this CPU? Prints frames/s for each way.

The shared YOLOv8n OpenVINO model is exported with a static batch of 1. This measures, on the same real frames:

  predict        ultralytics `model.predict(frame)` one frame at a time (what the worker does)
  predict-list   ultralytics `model.predict([f1..fB])` (ultralytics runs a batch-1 model frame by frame)
  ov-sync        the raw OpenVINO network, LATENCY hint (1 stream x all cores), one frame per request
  ov-batchB      the network reshaped to batch B, LATENCY hint: B frames per request
  ov-streams     THROUGHPUT hint (one stream per core, 1 thread each), B requests in flight (AsyncInferQueue)

Network-only rows exclude pre/post-processing, so they bound what batching could gain.

    .venv/bin/python bench/inference_batching.py [--model DIR] [--frames 60] [--batch 4] [--repeats 3]
"""

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO.parent / "shared" / "models" / "yolov8n_int8_openvino_model"
DEFAULT_FRAMES = REPO.parent / "shared" / "data" / "mall" / "images" / "*.jpg"


def letterbox(image: np.ndarray, size: int = 640) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / max(h, w)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)[None] / 255.0


def rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(n / (time.perf_counter() - started))
    return statistics.median(runs), runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("DETECTION_MODEL", str(DEFAULT_MODEL)))
    parser.add_argument("--images", default=str(DEFAULT_FRAMES), help="glob of real frames")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.model).exists():
        print(f"Model {args.model} not found (set --model or DETECTION_MODEL)", file=sys.stderr)
        return 2

    import openvino as ov
    from ultralytics import YOLO

    paths = sorted(glob.glob(args.images))
    frames = [cv2.imread(p) for p in (paths * (args.frames // max(len(paths), 1) + 1))[: args.frames]]
    n, b = len(frames), args.batch
    n -= n % b
    frames = frames[:n]
    tensors = [letterbox(f) for f in frames]
    print(f"{n} frames {frames[0].shape[1]}x{frames[0].shape[0]} from {args.images}; batch {b}; model {args.model}")

    yolo = YOLO(args.model, task="detect")
    yolo.predict(frames[0], verbose=False)  # load + warm up
    results: dict[str, tuple[float, list[float]]] = {}
    results["predict"] = rate(lambda: [yolo.predict(f, classes=[0], verbose=False) for f in frames], n, args.repeats)
    results["predict-list"] = rate(
        lambda: [yolo.predict(frames[i : i + b], classes=[0], verbose=False) for i in range(0, n, b)], n, args.repeats
    )

    core = ov.Core()
    xml = next(Path(args.model).glob("*.xml"))
    sync = core.compile_model(core.read_model(xml), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    sync(tensors[0])
    results["ov-sync"] = rate(lambda: [sync(t) for t in tensors], n, args.repeats)

    batched_model = core.read_model(xml)
    try:
        batched_model.reshape([b, 3, 640, 640])
    except RuntimeError as exc:  # exports with batch-1 constants baked into the head cannot be reshaped
        print(f"ov-batch{b}: the model cannot be reshaped to batch {b}: {str(exc).splitlines()[-1]}")
    else:
        batched = core.compile_model(batched_model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        stacks = [np.concatenate(tensors[i : i + b]) for i in range(0, n, b)]
        batched(stacks[0])
        results[f"ov-batch{b}"] = rate(lambda: [batched(s) for s in stacks], n, args.repeats)

    streams = core.compile_model(core.read_model(xml), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    queue = ov.AsyncInferQueue(streams, max(b, streams.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def run_async() -> None:
        for t in tensors:
            queue.start_async(t)
        queue.wait_all()

    run_async()
    results["ov-streams"] = rate(run_async, n, args.repeats)
    info = (
        f"streams={streams.get_property('NUM_STREAMS')} "
        f"threads={streams.get_property('INFERENCE_NUM_THREADS')} requests={len(queue)}"
    )

    base = results["predict"][0]
    print(f"{'way':<14} {'frames/s':>9} {'ms/frame':>9} {'vs predict':>10}  runs")
    for name, (median, runs) in results.items():
        extra = f"  ({info})" if name == "ov-streams" else ""
        print(
            f"{name:<14} {median:9.1f} {1000 / median:9.1f} {median / base:9.2f}x  "
            + " ".join(f"{r:.1f}" for r in runs)
            + extra
        )
    ov_sync = results["ov-sync"][0]
    for name in (f"ov-batch{b}", "ov-streams"):
        if name in results:
            print(f"network only: {name} {results[name][0] / ov_sync:.2f}x of ov-sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
