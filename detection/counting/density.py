"""Crowd-density models: a map of persons per pixel whose sum is the head count.

Two architectures, written in PyTorch from the layer-by-layer descriptions that come with their weights
(../shared/models/sanet_shb/README.md and ../shared/models/mcnn_shtech/README.md); nothing is downloaded:

- SANet (Scale Aggregation Network, Cao et al. 2018), Keras-layout weights `sanet_shb_keras_layout.npz`:
  RGB input scaled to pixel/255 - 0.5, sides multiples of 8, full-resolution output map.
- MCNN (Zhang et al. 2016), PyTorch-layout weights `mcnn_shtech{A,B}.npz`: grayscale input, raw 0-255, sides
  multiples of 4, output map at 1/4 resolution.

The architecture is inferred from the keys in the weights file (or forced with DENSITY_MODEL_ARCH). Loading is
strict: every array must be used exactly once with its exact shape, because a wrong layout does not fail
loudly -- it inflates counts 7-9x. The weights stay wherever the operator keeps them (DENSITY_MODEL).

Backends: `torch`, or `openvino` (the same torch module converted with `openvino.convert_model`, compiled for
CPU with dynamic height and width), which is what live cameras should use on CPU-only machines.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..detectors import ModelUnavailable

logger = logging.getLogger(__name__)

ARCHS = ("sanet", "mcnn")
BACKENDS = ("openvino", "torch")
HOW_TO_SET = (
    "Set DENSITY_MODEL to a crowd-density weights file (a SANet sanet_shb_keras_layout.npz or an MCNN "
    "mcnn_shtech*.npz; see docs/ACCURACY.md), or count with --mode detect."
)


@dataclass(frozen=True)
class DensityMap:
    """A density map covering the whole frame (its grid is the frame's, scaled)."""

    map: np.ndarray  # float32 (h, w), persons per map cell
    frame_width: int
    frame_height: int
    input_pixels: int  # pixels the network saw (after scaling to a valid size)
    inference_ms: float

    @property
    def count(self) -> float:
        return float(self.map.sum())

    @property
    def per_10k_px(self) -> float:
        """Crowd density as the network saw it: persons per 10,000 input pixels."""
        return self.count / max(self.input_pixels, 1) * 1e4

    def count_in(self, mask: np.ndarray | None) -> float:
        """Mass inside a boolean mask of the map's shape (None: the whole frame)."""
        return self.count if mask is None else float(self.map[mask].sum())


# --- architectures ---------------------------------------------------------------------------------------------


def _torch() -> Any:
    import torch  # heavy: only when a density model is wanted

    return torch


def build_sanet() -> Any:
    """SANet without instance normalisation, as in SANet_noIN.json (34 conv layers, 883,761 parameters)."""
    torch = _torch()
    nn = torch.nn

    def conv(name: str, cin: int, cout: int, k: int) -> tuple[str, Any]:
        return name, nn.Conv2d(cin, cout, k, padding=k // 2)

    class SANet(nn.Module):
        # (keras name, in, out, kernel) per branch; a branch of two layers is 1x1 reduction then kxk.
        MODULES = (
            [[("conv2d_1", 3, 16, 1)], [("conv2d_2", 3, 16, 3)], [("conv2d_3", 3, 16, 5)], [("conv2d_4", 3, 16, 7)]],
            [
                [("conv2d_5", 64, 32, 1)],
                [("conv2d_6", 64, 32, 1), ("conv2d_7", 32, 32, 3)],
                [("conv2d_8", 64, 32, 1), ("conv2d_9", 32, 32, 5)],
                [("conv2d_10", 64, 32, 1), ("conv2d_11", 32, 32, 7)],
            ],
            [
                [("conv2d_12", 128, 32, 1)],
                [("conv2d_13", 128, 64, 1), ("conv2d_14", 64, 32, 3)],
                [("conv2d_15", 128, 64, 1), ("conv2d_16", 64, 32, 5)],
                [("conv2d_17", 128, 64, 1), ("conv2d_18", 64, 32, 7)],
            ],
            [
                [("conv2d_19", 128, 16, 1)],
                [("conv2d_20", 128, 64, 1), ("conv2d_21", 64, 16, 3)],
                [("conv2d_22", 128, 64, 1), ("conv2d_23", 64, 16, 5)],
                [("conv2d_24", 128, 64, 1), ("conv2d_25", 64, 16, 7)],
            ],
        )
        # (keras name, in, out, kernel, transposed)
        DECODER = (
            ("conv2d_26", 64, 64, 9, False),
            ("conv2d_transpose_1", 64, 64, 2, True),
            ("conv2d_27", 64, 32, 7, False),
            ("conv2d_transpose_2", 32, 32, 2, True),
            ("conv2d_28", 32, 16, 5, False),
            ("conv2d_transpose_3", 16, 16, 2, True),
            ("conv2d_29", 16, 16, 3, False),
            ("conv2d_30", 16, 16, 5, False),
            ("conv2d_31", 16, 1, 1, False),
        )

        def __init__(self) -> None:
            super().__init__()
            layers = {}
            for module in self.MODULES:
                for branch in module:
                    layers.update(conv(*layer) for layer in branch)
            for name, cin, cout, k, transposed in self.DECODER:
                layers[name] = nn.ConvTranspose2d(cin, cout, 2, stride=2) if transposed else conv(name, cin, cout, k)[1]
            self.layers = nn.ModuleDict(layers)

        def forward(self, x: Any) -> Any:
            relu = torch.relu
            for index, module in enumerate(self.MODULES):
                outputs = []
                for branch in module:
                    y = x
                    for name, *_ in branch:
                        y = relu(self.layers[name](y))
                    outputs.append(y)
                x = torch.cat(outputs, dim=1)
                if index < 3:
                    x = torch.nn.functional.max_pool2d(x, 2)
            for name, *_ in self.DECODER:
                x = relu(self.layers[name](x))
            return x

    return SANet()


def build_mcnn() -> Any:
    """MCNN: three columns (9/7/7/7, 7/5/5/5, 5/3/3/3 kernels) fused by a 1x1 conv; output at 1/4 resolution."""
    torch = _torch()
    nn = torch.nn
    columns = {
        "branch1": ((1, 16, 9), (16, 32, 7), (32, 16, 7), (16, 8, 7)),
        "branch2": ((1, 20, 7), (20, 40, 5), (40, 20, 5), (20, 10, 5)),
        "branch3": ((1, 24, 5), (24, 48, 3), (48, 24, 3), (24, 12, 3)),
    }

    class Column(nn.Module):
        def __init__(self, spec: tuple[tuple[int, int, int], ...]) -> None:
            super().__init__()
            # Indices 0, 2, 4, 5 as in the released checkpoint (1 and 3 were the max-pools).
            self.convs = nn.ModuleDict(
                {str(i): nn.Conv2d(a, b, k, padding=k // 2) for i, (a, b, k) in zip((0, 2, 4, 5), spec, strict=True)}
            )

        def forward(self, x: Any) -> Any:
            x = torch.nn.functional.max_pool2d(torch.relu(self.convs["0"](x)), 2)
            x = torch.nn.functional.max_pool2d(torch.relu(self.convs["2"](x)), 2)
            return torch.relu(self.convs["5"](torch.relu(self.convs["4"](x))))

    class MCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branches = nn.ModuleDict({name: Column(spec) for name, spec in columns.items()})
            self.fuse = nn.Conv2d(30, 1, 1)

        def forward(self, x: Any) -> Any:
            return torch.relu(self.fuse(torch.cat([b(x) for b in self.branches.values()], dim=1)))

    return MCNN()


def _sanet_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras layout -> PyTorch: kernels (kh, kw, in, out) and transposed (kh, kw, out, in) both go axes 3, 2, 0, 1."""
    state = {}
    for key, value in arrays.items():
        layer, _, leaf = key.partition("/")
        kind = leaf.rsplit("/", 1)[-1]
        if kind == "kernel:0":
            state[f"layers.{layer}.weight"] = np.ascontiguousarray(value.transpose(3, 2, 0, 1))
        elif kind == "bias:0":
            state[f"layers.{layer}.bias"] = value
        else:
            raise ModelUnavailable(f"Unexpected array {key!r} in a SANet weights file.")
    return state


def _mcnn_state(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    state = {}
    for key, value in arrays.items():
        parts = key.split(".")  # DME.branch1.0.conv.weight / DME.fuse.0.conv.bias
        if parts[0] != "DME" or len(parts) != 5:
            raise ModelUnavailable(f"Unexpected array {key!r} in an MCNN weights file.")
        _, column, index, _, leaf = parts
        state[f"fuse.{leaf}" if column == "fuse" else f"branches.{column}.convs.{index}.{leaf}"] = value
    return state


def infer_arch(keys: list[str]) -> str:
    if any(k.startswith("conv2d_") and k.endswith(":0") for k in keys):
        return "sanet"
    if any(k.startswith("DME.") for k in keys):
        return "mcnn"
    raise ModelUnavailable(
        f"Cannot tell the density architecture from the weights' keys ({keys[:3]} ...). {HOW_TO_SET}"
    )


# --- the runnable model ----------------------------------------------------------------------------------------


class DensityModel:
    """A loaded density model: `predict(image_bgr) -> DensityMap`."""

    def __init__(
        self,
        path: str | Path,
        arch: str = "",
        backend: str = "openvino",
        max_side: int = 1024,
        threads: int = 0,
    ) -> None:
        path = Path(path).expanduser()
        if not str(path) or not path.is_file():
            raise ModelUnavailable(f"Density model {str(path)!r} does not exist. {HOW_TO_SET}")
        if backend not in BACKENDS:
            raise ModelUnavailable(f"Unknown density backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        try:
            with np.load(path) as npz:
                arrays = {k: npz[k].astype(np.float32) for k in npz.files}
        except Exception as exc:
            raise ModelUnavailable(f"Could not read the density model {str(path)!r}: {exc}. {HOW_TO_SET}") from exc
        self.arch = arch or infer_arch(sorted(arrays))
        if self.arch not in ARCHS:
            raise ModelUnavailable(f"Unknown DENSITY_MODEL_ARCH {self.arch!r}; choose one of {', '.join(ARCHS)}.")
        self.path = path
        self.name = f"{self.arch}:{path.name}"
        self.backend = backend
        self.max_side = max_side
        self.multiple = 8 if self.arch == "sanet" else 4
        torch = _torch()
        module = build_sanet() if self.arch == "sanet" else build_mcnn()
        state = _sanet_state(arrays) if self.arch == "sanet" else _mcnn_state(arrays)
        expected = module.state_dict()
        if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(expected[k].shape) for k in expected):
            missing = sorted(set(expected) - set(state))[:3]
            extra = sorted(set(state) - set(expected))[:3]
            raise ModelUnavailable(
                f"{str(path)!r} does not match the {self.arch} architecture (missing {missing}, unexpected {extra}, "
                f"or wrong shapes). Set DENSITY_MODEL_ARCH if the architecture was guessed wrong."
            )
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        module.eval()
        self.module = module
        self.threads = threads
        self._compiled: Any = None
        self._local = threading.local()  # one OpenVINO infer request per counting thread
        if backend == "openvino":
            self._compiled = self._openvino(module)

    def _openvino(self, module: Any) -> Any:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelUnavailable("DENSITY_BACKEND=openvino needs the openvino package; or use torch.") from exc
        torch = _torch()
        channels = 3 if self.arch == "sanet" else 1
        example = torch.zeros(1, channels, 64, 64)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit tracing deprecation notes from the converter
            ov_model = ov.convert_model(module, example_input=example, input=[(1, channels, -1, -1)])
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return ov.Core().compile_model(ov_model, "CPU", config)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """BGR/gray uint8 frame -> NCHW float32 input at a size the network maps back exactly."""
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        m = self.multiple
        new_w = max(m, round(width * scale / m) * m)
        new_h = max(m, round(height * scale / m) * m)
        if image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if self.arch == "sanet":
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            if (new_w, new_h) != (width, height):
                rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
            x = rgb.astype(np.float32) / 255.0 - 0.5
            return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if (new_w, new_h) != (width, height):
            gray = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(gray.astype(np.float32)[None, None])

    def predict(self, image: np.ndarray) -> DensityMap:
        started = time.perf_counter()
        x = self.prepare(image)
        if self._compiled is not None:
            request = getattr(self._local, "request", None)
            if request is None:  # a compiled model's own __call__ shares one request: not safe across threads
                request = self._local.request = self._compiled.create_infer_request()
            out = request.infer({0: x})[0]
        else:
            torch = _torch()
            if self.threads:
                torch.set_num_threads(self.threads)
            with torch.no_grad():
                out = self.module(torch.from_numpy(x)).numpy()
        density = np.asarray(out, dtype=np.float32)[0, 0]
        height, width = image.shape[:2]
        pixels = int(x.shape[2] * x.shape[3])
        return DensityMap(density, width, height, pixels, (time.perf_counter() - started) * 1000)


class DensityEnsemble:
    """One density model, or several: the first always runs; the others only where the first sees a very dense
    crowd (at least `very_dense` persons per 10,000 input pixels), and the largest count wins.

    Density models trained on moderate crowds under-count much denser ones (both SANet and MCNN have a negative
    bias on ShanghaiTech A), so the larger of two independent estimates is the better one there.
    """

    def __init__(self, models: list[DensityModel], very_dense: float = 2.0) -> None:
        if not models:
            raise ModelUnavailable(f"No density model is configured. {HOW_TO_SET}")
        self.models = models
        self.very_dense = very_dense
        self.name = "+".join(m.name for m in models)

    def predict(self, image: np.ndarray) -> list[DensityMap]:
        maps = [self.models[0].predict(image)]
        if len(self.models) > 1 and maps[0].per_10k_px >= self.very_dense:
            maps.extend(model.predict(image) for model in self.models[1:])
        return maps


def load_density_model(
    path: str, arch: str = "", backend: str = "openvino", max_side: int = 1024, very_dense: float = 2.0
) -> DensityEnsemble:
    """DENSITY_MODEL: one weights file, or several separated by commas (the first is the main model)."""
    paths = [p.strip() for p in str(path or "").split(",") if p.strip()]
    if not paths:
        raise ModelUnavailable(f"No density model is configured. {HOW_TO_SET}")
    models = [
        DensityModel(p, arch=arch if i == 0 else "", backend=backend, max_side=max_side) for i, p in enumerate(paths)
    ]
    return DensityEnsemble(models, very_dense)
