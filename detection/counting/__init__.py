"""People counting that holds up from sparse scenes to dense crowds.

- `slicing`: YOLO person detection with adaptive slicing (tiles chosen from frame and person size) and
  cross-tile merging.
- `density`: crowd-density models (SANet, MCNN) written from their published layer descriptions, loaded from
  operator-supplied NumPy weights, run with PyTorch or OpenVINO.
- `engine`: the counting engine with modes `detect`, `density` and `auto`, the pure scene decision, zones,
  per-camera calibration and the "an untrusted reading never lowers the count on its own" rule.
"""
