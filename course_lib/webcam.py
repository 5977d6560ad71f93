"""A live webcam widget for JupyterLab and Notebook 7, built on anywidget.

How a frame travels
-------------------
The browser captures the camera with ``getUserMedia`` into a ``<video>``
element, draws the current picture to a canvas at most :attr:`WebcamWidget.max_fps`
times a second, encodes it as JPEG and sends it to the kernel as a custom
widget message: the JSON content is a :data:`FRAME_FIELDS` dictionary and the
JPEG bytes travel as the message's one binary buffer. At most one frame is in
flight: while the kernel is busy the browser drops new frames instead of
queueing them, so the overlay never falls behind the video by more than one
frame.

The kernel validates the message (:func:`parse_frame_message`), decodes the
JPEG into an RGB ``uint8`` array, calls the user's processing function
(``widget.processor = fn``) and replies with one message: ``"result"`` with the
detections, ``"error"`` with a message the widget shows, or ``"ignored"`` for a
frame that arrives after the widget was stopped. The browser draws the boxes
and labels on a canvas laid over the video.

Frames never leave the browser and the student's own kernel, and nothing is
written to disk.

Processing functions
--------------------
A processing function takes one RGB ``uint8`` image of shape ``(H, W, 3)`` and
returns a list of dictionaries, one per object::

    {"box": (x_min, y_min, x_max, y_max), "label": "no mask", "colour": "#d62728", "score": 0.93}

``box`` is in pixels of the image it received; ``colour`` is a CSS colour.
:func:`validate_detections` checks this structure and names the first problem.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import numbers
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import anywidget
import numpy as np
import traitlets

log = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "webcam_static"

MAX_FRAME_BYTES = 2_000_000
"""Largest JPEG, in bytes, that the kernel accepts for one frame."""

MAX_FRAME_SIZE = (1920, 1080)
"""Largest frame, as ``(width, height)`` in pixels, that the kernel accepts."""

FRAME_FIELDS = {"type": str, "id": int, "width": int, "height": int, "source": str, "sent_at": float}
"""Fields of a frame message from the browser and their types.

``type`` is ``"frame"``; ``id`` numbers the frames of one session; ``width`` and
``height`` are the pixel size the browser encoded; ``source`` is ``"camera"``,
``"sequence"`` or ``"upload"``; ``sent_at`` is the browser clock in
milliseconds (``performance.now()``), echoed back to measure latency.
"""

SOURCES = ("camera", "sequence", "upload")

Processor = Callable[[np.ndarray], list]


class FrameRejected(ValueError):
    """A frame message that the kernel does not process; the message says why."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One validated, decoded frame.

    Attributes
    ----------
    id : int
        Frame number sent by the browser.
    image : (H, W, 3) ndarray of uint8
        RGB pixels.
    source : str
        One of :data:`SOURCES`.
    sent_at : float
        Browser clock when the frame was sent, in milliseconds.
    """

    id: int
    image: np.ndarray
    source: str
    sent_at: float


# --- frame protocol -------------------------------------------------------------


def _check_field(content: dict, name: str, kind: type) -> Any:
    if name not in content:
        raise FrameRejected(f"Frame message has no {name!r} field; expected the fields {sorted(FRAME_FIELDS)}.")
    value = content[name]
    if kind is float:
        valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    elif kind is int:
        valid = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        valid = isinstance(value, kind)
    if not valid:
        raise FrameRejected(f"Frame field {name!r} is {value!r} of type {type(value).__name__}; expected {kind.__name__}.")
    return value


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Read ``(width, height)`` from a JPEG header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.format != "JPEG":
                raise FrameRejected(f"Frame data is a {opened.format} image; the widget sends JPEG only.")
            return opened.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FrameRejected(f"Frame data is not a readable JPEG image ({error}).") from None


def parse_frame_message(
    content: Any,
    buffers: Sequence[Any],
    max_bytes: int = MAX_FRAME_BYTES,
    max_size: tuple[int, int] = MAX_FRAME_SIZE,
) -> Frame:
    """Validate and decode one frame message from the browser.

    Parameters
    ----------
    content : dict
        JSON content of the message, with the fields of :data:`FRAME_FIELDS`.
    buffers : sequence of bytes-like
        Binary buffers of the message; exactly one, the JPEG bytes.
    max_bytes : int
        Largest accepted JPEG size in bytes, checked before decoding.
    max_size : (width, height)
        Largest accepted frame size in pixels, read from the JPEG header before
        decoding, so a small file that would decode to a huge image is rejected
        cheaply.

    Returns
    -------
    Frame
        With the image as RGB ``uint8`` ``(height, width, 3)``.

    Raises
    ------
    FrameRejected
        For a message that is not a dictionary, a missing field or a field of
        the wrong type, an unknown source, a missing or extra buffer, a buffer
        over ``max_bytes``, data that is not JPEG or does not decode, a size
        over ``max_size``, or a size that differs from the declared one.
    """
    import cv2

    if not isinstance(content, dict):
        raise FrameRejected(f"Frame message content is a {type(content).__name__}; expected a dictionary.")
    values = {name: _check_field(content, name, kind) for name, kind in FRAME_FIELDS.items()}
    if values["type"] != "frame":
        raise FrameRejected(f"Message type {values['type']!r} is not 'frame'.")
    if values["source"] not in SOURCES:
        raise FrameRejected(f"Frame source {values['source']!r} is unknown; expected one of {SOURCES}.")
    if len(buffers) != 1:
        raise FrameRejected(f"Frame message has {len(buffers)} binary buffers; expected exactly one (the JPEG bytes).")

    data = bytes(buffers[0])
    if len(data) > max_bytes:
        raise FrameRejected(f"Frame is {len(data):,} bytes, over the limit of {max_bytes:,} bytes; lower the JPEG quality or the capture size.")
    if not data.startswith(b"\xff\xd8\xff"):
        raise FrameRejected(f"Frame data ({len(data)} bytes) does not start with the JPEG signature FF D8 FF.")

    width, height = _jpeg_size(data)
    max_width, max_height = max_size
    if width > max_width or height > max_height:
        raise FrameRejected(f"Frame is {width}x{height} pixels, over the limit of {max_width}x{max_height}.")
    if (width, height) != (values["width"], values["height"]):
        raise FrameRejected(f"Frame declares {values['width']}x{values['height']} pixels but its JPEG is {width}x{height}.")

    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameRejected(f"Frame JPEG ({len(data)} bytes) could not be decoded; it is truncated or corrupt.")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return Frame(id=int(values["id"]), image=image, source=values["source"], sent_at=float(values["sent_at"]))


def encode_frame(
    image: np.ndarray, frame_id: int = 0, source: str = "sequence", quality: int = 80, sent_at: float = 0.0
) -> tuple[dict, list[bytes]]:
    """Encode an RGB image as the frame message the browser would send.

    Used to feed recorded frames through exactly the path that camera frames
    take (:meth:`WebcamWidget.handle_frame`), without a browser.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB frame.
    frame_id, source, sent_at
        Message fields, see :data:`FRAME_FIELDS`.
    quality : int
        JPEG quality, 1 to 100.

    Returns
    -------
    content : dict
    buffers : list of one bytes object
    """
    data = encode_jpeg(image, quality)
    height, width = image.shape[:2]
    content = {"type": "frame", "id": int(frame_id), "width": int(width), "height": int(height), "source": source, "sent_at": float(sent_at)}
    return content, [data]


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """Encode an RGB ``uint8`` ``(H, W, 3)`` image as JPEG bytes."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}.")
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as JPEG.")
    return encoded.tobytes()


def validate_detections(detections: Any, image_shape: tuple[int, ...] | None = None) -> list[dict]:
    """Check a processing function's output and convert it to plain JSON values.

    Parameters
    ----------
    detections : list of dict
        Each with ``box`` (four numbers ``x_min, y_min, x_max, y_max`` with
        ``x_min <= x_max`` and ``y_min <= y_max``), ``label`` (str), ``colour``
        (str, a CSS colour such as ``"#2ca02c"`` or ``"red"``) and ``score``
        (a finite number).
    image_shape : tuple, optional
        Shape of the image the boxes refer to; when given, every box must lie
        within ``[0, width] x [0, height]`` (one pixel of slack).

    Returns
    -------
    list of dict
        The same detections with ``box`` a list of four floats, ``score`` a
        float, and no other keys.

    Raises
    ------
    ValueError
        Naming the first detection and field that is wrong, and how.
    """
    if isinstance(detections, dict) or not isinstance(detections, (list, tuple)):
        raise ValueError(f"A processing function must return a list of dictionaries, got {type(detections).__name__}.")
    cleaned = []
    for index, detection in enumerate(detections):
        where = f"Detection {index}"
        if not isinstance(detection, dict):
            raise ValueError(f"{where} is a {type(detection).__name__}; expected a dictionary with keys box, label, colour, score.")
        missing = [key for key in ("box", "label", "colour", "score") if key not in detection]
        if missing:
            raise ValueError(f"{where} has no {', '.join(repr(k) for k in missing)}; expected keys box, label, colour, score.")
        box = detection["box"]
        try:
            box = [float(v) for v in np.asarray(box, dtype=np.float64).ravel()]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: box {box!r} is not four numbers (x_min, y_min, x_max, y_max).") from None
        if len(box) != 4:
            raise ValueError(f"{where}: box has {len(box)} numbers; expected four (x_min, y_min, x_max, y_max).")
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"{where}: box {box} contains NaN or infinity.")
        x_min, y_min, x_max, y_max = box
        if x_min > x_max or y_min > y_max:
            raise ValueError(
                f"{where}: box {box} has x_min > x_max or y_min > y_max; use (x_min, y_min, x_max, y_max), not (x, y, width, height)."
            )
        if image_shape is not None:
            height, width = image_shape[:2]
            if x_min < -1 or y_min < -1 or x_max > width + 1 or y_max > height + 1:
                raise ValueError(f"{where}: box {box} lies outside the {width}x{height} image.")
        label, colour, score = detection["label"], detection["colour"], detection["score"]
        if not isinstance(label, str):
            raise ValueError(f"{where}: label {label!r} is a {type(label).__name__}; expected str.")
        if not isinstance(colour, str) or not colour:
            raise ValueError(f"{where}: colour {colour!r} is not a CSS colour string such as '#2ca02c' or 'red'.")
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise ValueError(f"{where}: score {score!r} is not a finite number.")
        cleaned.append({"box": box, "label": label, "colour": colour, "score": float(score)})
    return cleaned


# --- the widget -----------------------------------------------------------------


class WebcamWidget(anywidget.AnyWidget):
    """Live camera view with a processing function applied to each frame.

    Parameters
    ----------
    processor : callable, optional
        ``processor(image) -> list of dict``, see the module docstring. Without
        one, frames are decoded and counted but nothing is drawn.
    **kwargs
        Initial trait values, for example ``max_fps=10`` or ``quality=0.7``.

    Notes
    -----
    The kernel handles widget messages between cell executions, so frames are
    processed only while no cell is running.
    """

    _esm = _STATIC / "webcam.js"
    _css = _STATIC / "webcam.css"

    running = traitlets.Bool(False, help="True while frames are captured and processed; Start and Stop set it.").tag(sync=True)
    source = traitlets.Unicode("camera", help="Frame source: 'camera', 'sequence' or 'upload'.").tag(sync=True)
    max_fps = traitlets.Float(10.0, help="Upper bound on frames sent per second.").tag(sync=True)
    quality = traitlets.Float(0.75, help="JPEG quality used by the browser, 0.1 to 1.0.").tag(sync=True)
    capture_width = traitlets.Int(640, help="Width in pixels of the frames sent; the height keeps the camera's aspect ratio.").tag(sync=True)
    status = traitlets.Unicode("", help="Last message shown under the video (errors and rejections).").tag(sync=True)
    sequence_length = traitlets.Int(0, help="Number of frames loaded for the 'sequence' source.").tag(sync=True)
    frames_received = traitlets.Int(0, help="Frame messages received from the browser.").tag(sync=True)
    frames_processed = traitlets.Int(0, help="Frames passed to the processor without error.").tag(sync=True)
    frames_rejected = traitlets.Int(0, help="Frames rejected by validation or by a processor error.").tag(sync=True)
    frames_ignored = traitlets.Int(0, help="Frames that arrived after the widget was stopped.").tag(sync=True)

    @traitlets.validate("max_fps")
    def _valid_fps(self, proposal):
        value = float(proposal["value"])
        if not 0.5 <= value <= 60:
            raise traitlets.TraitError(f"max_fps={value} is outside 0.5 to 60 frames per second.")
        return value

    @traitlets.validate("quality")
    def _valid_quality(self, proposal):
        value = float(proposal["value"])
        if not 0.1 <= value <= 1.0:
            raise traitlets.TraitError(f"quality={value} is outside 0.1 to 1.0.")
        return value

    @traitlets.validate("source")
    def _valid_source(self, proposal):
        if proposal["value"] not in SOURCES:
            raise traitlets.TraitError(f"source={proposal['value']!r} is unknown; use one of {SOURCES}.")
        return proposal["value"]

    def __init__(self, processor: Processor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.processor = processor
        self.max_bytes = MAX_FRAME_BYTES
        self.max_size = MAX_FRAME_SIZE
        self.last_frame: np.ndarray | None = None
        self.last_detections: list[dict] = []
        # The sequence travels as message buffers, not as a trait, so that saved notebooks do not store it.
        self._sequence: list[bytes] = []
        self.on_msg(self._on_custom_message)

    def start(self) -> None:
        """Start capturing, as the Start button does."""
        self.running = True

    def stop(self) -> None:
        """Stop capturing; frames already on their way are ignored."""
        self.running = False

    def load_sequence(self, frames: Iterable[np.ndarray], quality: int = 80) -> None:
        """Send RGB frames to the browser for the ``"sequence"`` source, which plays them in a loop.

        The frames are JPEG-encoded once and kept in the kernel; every view
        of the widget receives them when it is displayed.
        """
        self._sequence = [encode_jpeg(frame, quality) for frame in frames]
        self.sequence_length = len(self._sequence)
        self._send_sequence()

    def _send_sequence(self) -> None:
        self.send({"type": "sequence", "count": len(self._sequence)}, buffers=self._sequence)

    def handle_frame(self, content: Any, buffers: Sequence[Any]) -> dict:
        """Process one frame message and return the reply for the browser.

        Never raises for bad input or a failing processor: rejections and
        processor exceptions become ``{"type": "error", ...}`` replies, and are
        logged.

        Returns
        -------
        dict
            ``type`` is ``"result"`` (with ``detections``, ``processing_ms``,
            ``width``, ``height``), ``"error"`` (with ``message``) or
            ``"ignored"`` (the widget is stopped). ``id`` and ``sent_at`` echo
            the frame's when they were readable.
        """
        self.frames_received += 1
        echo = {}
        if isinstance(content, dict):
            echo = {key: content[key] for key in ("id", "sent_at") if isinstance(content.get(key), (int, float))}
        if not self.running:
            self.frames_ignored += 1
            return {"type": "ignored", **echo}

        try:
            frame = parse_frame_message(content, buffers, max_bytes=self.max_bytes, max_size=self.max_size)
        except FrameRejected as error:
            return self._error_reply(f"Frame rejected: {error}", echo)

        self.last_frame = frame.image
        start = time.perf_counter()
        detections: list[dict] = []
        if self.processor is not None:
            try:
                detections = validate_detections(self.processor(frame.image), frame.image.shape)
            except Exception as error:
                # Any error of user code is reported in the widget instead of breaking the comm.
                name = getattr(self.processor, "__name__", type(self.processor).__name__)
                return self._error_reply(f"The processing function {name} failed on frame {frame.id}: {type(error).__name__}: {error}", echo)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.frames_processed += 1
        self.last_detections = detections
        height, width = frame.image.shape[:2]
        return {"type": "result", **echo, "detections": detections, "processing_ms": round(elapsed_ms, 2), "width": width, "height": height}

    def _error_reply(self, message: str, echo: dict) -> dict:
        self.frames_rejected += 1
        self.status = message
        log.warning(message)
        return {"type": "error", **echo, "message": message}

    def _on_custom_message(self, widget, content, buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "status":
            # The browser reports camera errors (access denied, no camera) so that Python sees them too.
            self.status = str(content.get("message", ""))
            return
        if isinstance(content, dict) and content.get("type") == "sequence_request":
            self._send_sequence()
            return
        with self.hold_sync():
            reply = self.handle_frame(content, buffers)
        self.send(reply)


# --- running without a browser --------------------------------------------------


@dataclasses.dataclass
class StreamReport:
    """Counts from :func:`play_frames`.

    Attributes
    ----------
    frames : int
        Frames sent.
    processed : int
        Frames that produced a ``"result"`` reply.
    errors : list of str
        Messages of ``"error"`` replies.
    detections : list of list of dict
        Detections of each processed frame, in order.
    processing_ms : list of float
        Processing time of each processed frame.
    """

    frames: int = 0
    processed: int = 0
    errors: list = dataclasses.field(default_factory=list)
    detections: list = dataclasses.field(default_factory=list)
    processing_ms: list = dataclasses.field(default_factory=list)

    @property
    def faces(self) -> int:
        """Total number of detections over all processed frames."""
        return sum(len(d) for d in self.detections)

    def label_counts(self) -> dict[str, int]:
        """Count detections by label, sorted by label."""
        counts: dict[str, int] = {}
        for frame in self.detections:
            for detection in frame:
                counts[detection["label"]] = counts.get(detection["label"], 0) + 1
        return dict(sorted(counts.items()))


def play_frames(widget: WebcamWidget, frames: Iterable[np.ndarray], quality: int = 80, progress: bool = False) -> StreamReport:
    """Feed RGB frames through the widget's frame protocol, as the browser would.

    Each frame is JPEG-encoded, wrapped in a frame message and handed to
    :meth:`WebcamWidget.handle_frame`, so validation, decoding and the
    processor run exactly as for camera frames. The widget is started if it
    is stopped; no browser is needed.

    Returns
    -------
    StreamReport
    """
    widget.running = True
    report = StreamReport()
    iterator: Iterable = frames
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(frames, desc="Playing frames", unit="frame")
    for index, frame in enumerate(iterator):
        content, buffers = encode_frame(frame, frame_id=index, source="sequence", quality=quality)
        reply = widget.handle_frame(content, buffers)
        report.frames += 1
        if reply["type"] == "result":
            report.processed += 1
            report.detections.append(reply["detections"])
            report.processing_ms.append(reply["processing_ms"])
        elif reply["type"] == "error":
            report.errors.append(reply["message"])
    return report
