"""Synthetic face masks drawn onto faces from their five landmarks.

A mask is drawn procedurally: its outline, pleats, seams and fabric patterns
are generated with NumPy and OpenCV in a *mask plane*, then projected onto the
face. No template images are used.

Geometry
--------
The face is modelled as a vertical cylinder seen from the front:

* the horizontal axis ``u`` follows the eye line, so the mask follows the
  roll of the head;
* the vertical axis ``W`` runs from the midpoint of the eyes to the midpoint
  of the mouth corners, so ``r = 0`` on the eye line and ``r = 1`` on the
  mouth line;
* the yaw angle (head turned left or right) is estimated from how far the
  nose tip sits from the eye-mouth midline, measured in half eye distances;
  the nose sticks out of the face, so it moves more than the eyes when the
  head turns. A point at angle ``theta`` around the cylinder appears at
  ``R * sin(theta + yaw)``: the far side of the mask is squeezed and the near
  side stretched, as in a photograph.

The chin is estimated as ``mouth_centre + CHIN_FRACTION * (mouth_centre -
eye_centre)`` (:func:`chin_point`). A correctly worn mask rises to the nose
bridge, halfway between the eye line and the nose tip, and reaches below the
chin.

Incorrectly worn masks
----------------------
``"below_nose"`` leaves the nose tip uncovered and still covers the mouth.
``"on_chin"`` is pulled down under the lips: it covers the chin but leaves
both the nose and the mouth uncovered.

Examples
--------
>>> from course_lib.faces import detect_largest_face
>>> face = detect_largest_face(image)                      # doctest: +SKIP
>>> masked = apply_mask(image, face.landmarks, "cloth", seed=3)  # doctest: +SKIP
>>> masked.image.shape, masked.region.dtype                # doctest: +SKIP
((250, 250, 3), dtype('bool'))
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MASK_TYPES = ("surgical", "cloth", "n95", "kn95", "black", "transparent", "below_nose", "on_chin")
"""Mask types known to :func:`apply_mask`; the last two are worn incorrectly."""

CORRECTLY_WORN = {name: name not in ("below_nose", "on_chin") for name in MASK_TYPES}
"""Whether each mask type covers nose and mouth as it should."""

CHIN_FRACTION = 0.6
"""The chin lies this fraction of the eye-to-mouth vector below the mouth centre."""

PATTERNS = ("plain", "stripes", "dots", "checks")
"""Fabric patterns of the ``"cloth"`` mask."""

SURGICAL_COLOURS = {
    "blue": (136, 190, 224),
    "white": (232, 236, 238),
    "green": (150, 205, 185),
    "pink": (236, 178, 196),
    "lavender": (190, 180, 222),
}
"""Colours of disposable surgical masks, RGB."""

CLOTH_COLOURS = (
    (40, 60, 110),
    (150, 40, 50),
    (60, 110, 80),
    (200, 180, 140),
    (90, 90, 100),
    (220, 120, 60),
    (70, 140, 170),
)
"""Base colours of cloth masks, RGB; the pattern colour is drawn from the same list."""

RESPIRATOR_COLOURS = ((232, 232, 226), (230, 222, 200), (218, 222, 228))
"""Colours of N95 and KN95 respirators, RGB."""

_EYE_ANGLE = 0.5
"""Angle (radians) around the face cylinder of each eye, seen from the front."""
_NOSE_DEPTH = 1.35
"""Distance of the nose tip from the cylinder axis, in cylinder radii."""
_HALF_ANGLE = 1.25
"""Angle (radians) around the cylinder covered by each half of the mask."""
_S_RANGE = 1.08
_R_RANGE = (-0.1, 2.1)

_OPTIONS = {
    "surgical": {"pleats", "ear_loops"},
    "cloth": {"pattern", "pattern_colour", "ear_loops"},
    "n95": {"valve", "straps"},
    "kn95": {"valve", "ear_loops"},
    "black": {"ear_loops"},
    "transparent": {"glare", "ear_loops"},
    "below_nose": {"base"},
    "on_chin": {"base"},
}


# --- results ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaskedFace:
    """A face with a synthetic mask.

    Attributes
    ----------
    image : (H, W, 3) ndarray of uint8
        The masked image, RGB.
    region : (H, W) ndarray of bool
        True where the mask body covers the face (ear loops and straps are
        not part of it). For the transparent mask the clear window counts as
        covered.
    mask_type : str
        One of :data:`MASK_TYPES`.
    correctly_worn : bool
        False for ``"below_nose"`` and ``"on_chin"``.
    colour : tuple of int
        Main colour of the mask, RGB.
    options : dict
        Style options that were used (pattern, pleats, valve, base style...).
    """

    image: np.ndarray
    region: np.ndarray
    mask_type: str
    correctly_worn: bool
    colour: tuple[int, int, int] = (0, 0, 0)
    options: dict = dataclasses.field(default_factory=dict)

    ok = True
    reason = None


@dataclasses.dataclass(frozen=True)
class NoFace:
    """Result of :func:`mask_face` when no mask could be drawn.

    ``bool(NoFace(...))`` is False, and ``ok`` is False, so callers can write
    ``if not result.ok: print(result.reason)``.

    Attributes
    ----------
    reason : str
        Why, in a few words: ``"no face found"``, ``"low confidence (0.62 < 0.90)"``,
        ``"face too small (eye distance 5.1 px < 8 px)"``, ``"implausible landmarks (...)"``.
    score : float or None
        Detector confidence of the best face, when there was one.
    """

    reason: str
    score: float | None = None

    ok = False

    def __bool__(self) -> bool:
        return False


# --- face geometry ------------------------------------------------------------------


def chin_point(landmarks: np.ndarray) -> np.ndarray:
    """Estimate the chin from five landmarks.

    Parameters
    ----------
    landmarks : (5, 2) array
        ``(x, y)`` in :data:`course_lib.faces.LANDMARK_NAMES` order.

    Returns
    -------
    (2,) ndarray of float32
        ``mouth_centre + CHIN_FRACTION * (mouth_centre - eye_centre)``.
    """
    points = _check_landmarks(landmarks)
    eye_centre = (points[0] + points[1]) / 2
    mouth_centre = (points[3] + points[4]) / 2
    return (mouth_centre + CHIN_FRACTION * (mouth_centre - eye_centre)).astype(np.float32)


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(
            f"Expected landmarks of shape (5, 2) (left_eye, right_eye, nose, mouth_left, mouth_right), got {points.shape}."
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("The landmarks contain NaN or infinity; pass the points returned by course_lib.faces.detect_faces.")
    return points


@dataclasses.dataclass(frozen=True)
class FaceFrame:
    """Cylinder model of a face, estimated from five landmarks.

    Attributes
    ----------
    origin : (2,) ndarray
        Image point of the cylinder axis on the eye line.
    u : (2,) ndarray
        Unit vector along the eye line (image ``x`` for an upright face).
    w : (2,) ndarray
        Vector from the eye centre to the mouth centre (``r = 1``).
    radius : float
        Cylinder radius in pixels.
    yaw : float
        Head turn in radians; positive when the nose points to the image's right.
    r_nose : float
        Height of the nose tip in units of ``w``.
    s_landmarks : (5,) ndarray
        Mask-plane ``s`` coordinate of each landmark.
    r_landmarks : (5,) ndarray
        Mask-plane ``r`` coordinate of each landmark.
    """

    origin: np.ndarray
    u: np.ndarray
    w: np.ndarray
    radius: float
    yaw: float
    r_nose: float
    s_landmarks: np.ndarray
    r_landmarks: np.ndarray

    @property
    def eye_distance(self) -> float:
        return 2 * self.radius * math.cos(self.yaw) * math.sin(_EYE_ANGLE)

    def to_image(self, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Map mask-plane points ``(s, r)`` to image ``(x, y)``; returns ``(..., 2)``."""
        s, r = np.broadcast_arrays(np.asarray(s, dtype=np.float64), np.asarray(r, dtype=np.float64))
        angle = np.clip(s * _HALF_ANGLE + self.yaw, -math.pi / 2, math.pi / 2)
        along = self.radius * np.sin(angle)
        return self.origin + along[..., None] * self.u + r[..., None] * self.w

    def to_plane(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map image points ``(..., 2)`` to mask-plane ``(s, r)`` and a visibility flag."""
        basis = np.stack([self.u, self.w], axis=1)
        coefficients = (np.asarray(xy, dtype=np.float64) - self.origin) @ np.linalg.inv(basis).T
        along, r = coefficients[..., 0], coefficients[..., 1]
        ratio = along / self.radius
        visible = np.abs(ratio) < 1.0
        s = (np.arcsin(np.clip(ratio, -1.0, 1.0)) - self.yaw) / _HALF_ANGLE
        return s, r, visible


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """Fit the cylinder face model to five landmarks.

    Raises
    ------
    ValueError
        When the landmarks are degenerate: eyes at one point, mouth on the eye
        line, or mouth above the eyes along the face axis.
    """
    points = _check_landmarks(landmarks)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1.0:
        raise ValueError(f"The two eye landmarks are {eye_distance:.2f} px apart; they must be distinct points.")
    u = eye_vector / eye_distance
    eye_centre = (left_eye + right_eye) / 2
    mouth_centre = (mouth_left + mouth_right) / 2
    w = mouth_centre - eye_centre
    normal = np.array([-u[1], u[0]])
    height = float(w @ normal)
    if height < 0.2 * eye_distance:
        raise ValueError(
            f"The mouth landmarks lie {height:.1f} px below the eye line for an eye distance of {eye_distance:.1f} px; "
            "expected a face with the mouth clearly below the eyes."
        )
    coordinates = (points - eye_centre) @ np.linalg.inv(np.stack([u, w], axis=1)).T
    along, r = coordinates[:, 0], coordinates[:, 1]
    # Nose offset from the eye-mouth midline, in half eye distances, gives the yaw.
    ratio = along[2] / (eye_distance / 2)
    depth_factor = (_NOSE_DEPTH - math.cos(_EYE_ANGLE)) / math.sin(_EYE_ANGLE)
    yaw = float(np.clip(math.atan(ratio / depth_factor), -0.9, 0.9))
    radius = eye_distance / (2 * math.cos(yaw) * math.sin(_EYE_ANGLE))
    origin = eye_centre - radius * math.sin(yaw) * math.cos(_EYE_ANGLE) * u
    frame = FaceFrame(origin=origin, u=u, w=w, radius=radius, yaw=yaw, r_nose=float(r[2]),
                      s_landmarks=np.zeros(5), r_landmarks=np.zeros(5))
    s, r_all, _ = frame.to_plane(points)
    return dataclasses.replace(frame, s_landmarks=s, r_landmarks=r_all)


# --- mask shapes in the mask plane ----------------------------------------------------


@dataclasses.dataclass
class _Plane:
    """A raster of the mask plane: columns span ``s``, rows span ``r``."""

    rows: int
    cols: int
    aspect: float  # image length of one unit of s divided by one unit of r, at the centre

    def __post_init__(self):
        self.s = np.linspace(-_S_RANGE, _S_RANGE, self.cols, dtype=np.float32)[None, :].repeat(self.rows, 0)
        self.r = np.linspace(_R_RANGE[0], _R_RANGE[1], self.rows, dtype=np.float32)[:, None].repeat(self.cols, 1)

    def to_pixels(self, s, r) -> np.ndarray:
        col = (np.asarray(s) + _S_RANGE) / (2 * _S_RANGE) * (self.cols - 1)
        row = (np.asarray(r) - _R_RANGE[0]) / (_R_RANGE[1] - _R_RANGE[0]) * (self.rows - 1)
        return np.stack([col, row], axis=-1)

    def fill(self, outline: np.ndarray) -> np.ndarray:
        """Rasterise a closed outline of ``(s, r)`` points as a float32 coverage image."""
        import cv2

        shift = 4
        pixels = np.round(self.to_pixels(outline[:, 0], outline[:, 1]) * (1 << shift)).astype(np.int32)
        canvas = np.zeros((self.rows, self.cols), np.uint8)
        cv2.fillPoly(canvas, [pixels], 255, lineType=cv2.LINE_AA, shift=shift)
        return canvas.astype(np.float32) / 255.0

    def pixels_per_r(self) -> float:
        return (self.rows - 1) / (_R_RANGE[1] - _R_RANGE[0])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _outline(style: str, top: float, bottom: float, width: float = 1.0) -> np.ndarray:
    """Closed outline of a mask style as ``(N, 2)`` points ``(s, r)``.

    ``top`` is the height of the top centre (nose bridge), ``bottom`` of the
    bottom centre (below the chin); ``width`` scales ``s``.
    """
    height = bottom - top
    s = np.linspace(-1.0, 1.0, 81)
    if style == "surgical":
        top_edge = top + height * (0.05 * np.abs(s) + 0.06 * s**2)
        bottom_edge = bottom - height * 0.30 * np.abs(s) ** 2.5
        side = 0.97
    elif style in ("cloth", "black", "transparent"):
        top_edge = top + height * (0.20 * np.abs(s) ** 1.1 - 0.02 * s**2)
        bottom_edge = bottom - height * (0.42 * s**2)
        side = 0.93
    elif style == "kn95":
        top_edge = top + height * 0.30 * np.abs(s) ** 0.9
        bottom_edge = bottom - height * 0.40 * np.abs(s) ** 0.85
        side = 0.95
    elif style == "n95":
        # A rounded cup: a superellipse, slightly pointed at the nose.
        angle = np.linspace(0, 2 * np.pi, 161)
        cos, sin = np.cos(angle), np.sin(angle)
        exponent = 2.4
        x = np.sign(cos) * np.abs(cos) ** (2 / exponent) * 0.9
        y = np.sign(sin) * np.abs(sin) ** (2 / exponent)
        y = np.where(y < 0, y * (1 + 0.12 * (1 - np.abs(x) / 0.9)), y)  # pointed towards the nose
        centre = (top + bottom) / 2 + 0.03 * height
        outline = np.stack([x * width, centre + y * height / 2], axis=1)
        outline[:, 1] = np.maximum(outline[:, 1], top)
        return outline
    else:
        raise ValueError(f"Unknown mask outline style {style!r}.")
    scale = side * width
    top_points = np.stack([s * scale, top_edge], axis=1)
    bottom_points = np.stack([s[::-1] * scale * 0.97, bottom_edge[::-1]], axis=1)
    return np.concatenate([top_points, bottom_points], axis=0)


def _fabric_noise(plane: _Plane, rng: np.random.Generator, amplitude: float, grain: float = 1.0) -> np.ndarray:
    import cv2

    noise = rng.standard_normal((plane.rows, plane.cols)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), grain)
    noise /= max(float(noise.std()), 1e-6)
    return 1.0 + amplitude * noise


def _shading(plane: _Plane, frame: FaceFrame, top: float, bottom: float, strength: float = 1.0) -> np.ndarray:
    """Soft light from above and in front: a vertical gradient and a fall-off towards the sides."""
    vertical = 1.06 - 0.16 * np.clip((plane.r - top) / max(bottom - top, 1e-3), 0, 1)
    facing = np.cos(np.clip(plane.s * _HALF_ANGLE + frame.yaw, -np.pi / 2, np.pi / 2))
    sideways = 0.72 + 0.28 * facing
    shade = vertical * sideways
    return 1.0 + strength * (shade - 1.0)


def _edge_distance(coverage: np.ndarray) -> np.ndarray:
    """Distance in plane pixels from each inside pixel to the mask's edge."""
    import cv2

    return cv2.distanceTransform((coverage > 0.5).astype(np.uint8), cv2.DIST_L2, 3)


def _pleats(plane: _Plane, top: float, bottom: float, count: int) -> np.ndarray:
    """Brightness of horizontal pleats: a bright fold with a soft shadow under it."""
    height = bottom - top
    shade = np.ones_like(plane.s)
    for k in range(count):
        line = top + height * (0.30 + 0.42 * k / max(count - 1, 1)) + height * 0.05 * plane.s**2
        offset = (plane.r - line) / height
        above = np.clip(1 + offset / 0.12, 0, 1) * (offset < 0)
        below = np.clip(1 - offset / 0.07, 0, 1) * (offset >= 0)
        shade += 0.10 * above**2 - 0.26 * below**1.5
    return shade


def _stripes(plane: _Plane, rng: np.random.Generator) -> np.ndarray:
    angle = float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]))
    period = float(rng.uniform(0.12, 0.22))
    coordinate = plane.s * math.sin(angle) * plane.aspect + plane.r * math.cos(angle)
    phase = np.mod(coordinate / period, 1.0)
    duty = float(rng.uniform(0.3, 0.5))
    softness = 0.06
    return _smoothstep(0, softness, phase) * (1 - _smoothstep(duty, duty + softness, phase))


def _dots(plane: _Plane, rng: np.random.Generator) -> np.ndarray:
    period = float(rng.uniform(0.14, 0.22))
    x = plane.s * plane.aspect / period
    y = plane.r / period
    row = np.floor(y)
    x = x + 0.5 * np.mod(row, 2)  # offset every other row
    dx = np.mod(x, 1.0) - 0.5
    dy = np.mod(y, 1.0) - 0.5
    radius = float(rng.uniform(0.18, 0.3))
    distance = np.hypot(dx, dy)
    return 1 - _smoothstep(radius - 0.06, radius + 0.02, distance)


def _checks(plane: _Plane, rng: np.random.Generator) -> np.ndarray:
    period = float(rng.uniform(0.14, 0.24))
    x = np.mod(plane.s * plane.aspect / period, 1.0)
    y = np.mod(plane.r / period, 1.0)
    band_x = _smoothstep(0.0, 0.05, x) * (1 - _smoothstep(0.5, 0.55, x))
    band_y = _smoothstep(0.0, 0.05, y) * (1 - _smoothstep(0.5, 0.55, y))
    return 0.5 * band_x + 0.5 * band_y  # gingham: 0, 0.5 or 1


# --- drawing -------------------------------------------------------------------------


@dataclasses.dataclass
class _Drawing:
    rgb: np.ndarray  # (rows, cols, 3) float32 in [0, 255]
    alpha: np.ndarray  # (rows, cols) float32 in [0, 1]
    window: np.ndarray | None = None  # (rows, cols) float32, clear panel of the transparent mask
    glare: np.ndarray | None = None  # (rows, cols) float32, specular highlights on the panel
    loops: list = dataclasses.field(default_factory=list)  # (start s, start r, end s, end r, kind)
    loop_colour: tuple = (235, 235, 235)


def _resolve_colour(colour, palette, rng) -> np.ndarray:
    if colour is None:
        if isinstance(palette, dict):
            palette = list(palette.values())
        return np.array(palette[int(rng.integers(len(palette)))], dtype=np.float32)
    if isinstance(colour, str):
        named = SURGICAL_COLOURS.get(colour)
        if named is None:
            import matplotlib.colors

            try:
                return np.array(matplotlib.colors.to_rgb(colour), dtype=np.float32) * 255
            except ValueError:
                raise ValueError(f"Unknown colour {colour!r}: use an (R, G, B) tuple of 0-255 values or a name such as 'navy'.") from None
        return np.array(named, dtype=np.float32)
    values = np.asarray(colour, dtype=np.float32).reshape(-1)
    if values.shape != (3,) or np.any(values < 0) or np.any(values > 255):
        raise ValueError(f"colour must be an (R, G, B) tuple of values in 0-255, got {colour!r}.")
    return values


def _draw_surgical(plane, frame, top, bottom, rng, colour, options) -> _Drawing:
    base = _resolve_colour(colour, SURGICAL_COLOURS, rng)
    pleats = int(options.get("pleats", 3))
    if not 0 <= pleats <= 6:
        raise ValueError(f"pleats={pleats} is out of range; use 0 to 6 pleats.")
    alpha = plane.fill(_outline("surgical", top, bottom))
    shade = _shading(plane, frame, top, bottom) * _pleats(plane, top, bottom, pleats) * _fabric_noise(plane, rng, 0.02)
    # Bound hems along the top and bottom edges and a nose wire under the top hem.
    height = bottom - top
    hem = 0.07 * height
    top_edge = top + height * (0.05 * np.abs(plane.s) + 0.06 * plane.s**2)
    bottom_edge = bottom - height * 0.30 * np.abs(plane.s) ** 2.5
    near_top = np.clip(1 - (plane.r - top_edge) / hem, 0, 1) * (plane.r >= top_edge - 0.01)
    near_bottom = np.clip(1 - (bottom_edge - plane.r) / hem, 0, 1) * (plane.r <= bottom_edge + 0.01)
    shade *= 1 - 0.08 * (near_top > 0.05) - 0.08 * (near_bottom > 0.05)
    wire = (np.abs(plane.s) < 0.32) * np.exp(-(((plane.r - top_edge - 0.45 * hem) / (0.25 * hem)) ** 2))
    shade *= 1 + 0.10 * wire
    rgb = base[None, None, :] * shade[..., None]
    loops = [] if not options.get("ear_loops", True) else _ear_loops(top, bottom, 0.96)
    return _Drawing(rgb=rgb, alpha=alpha, loops=loops, loop_colour=tuple(np.minimum(base * 1.05, 255)))


def _draw_cloth(plane, frame, top, bottom, rng, colour, options, black=False) -> _Drawing:
    alpha = plane.fill(_outline("black" if black else "cloth", top, bottom))
    shade = _shading(plane, frame, top, bottom) * _fabric_noise(plane, rng, 0.035, grain=0.7)
    # A vertical centre seam: a thin dark line with a slight bulge on each side.
    seam_distance = np.abs(plane.s) * plane.aspect / max(bottom - top, 1e-3)
    shade *= 1 - 0.25 * np.exp(-((seam_distance / 0.012) ** 2)) + 0.05 * np.exp(-((seam_distance / 0.06) ** 2))
    if black:
        base = _resolve_colour(colour, [(28, 28, 32)], rng)
        rgb = base[None, None, :] * shade[..., None]
        sheen = np.exp(-(((plane.s + 0.35 * frame.yaw) / 0.35) ** 2)) * np.exp(-(((plane.r - top - 0.35 * (bottom - top)) / 0.5) ** 2))
        rgb = rgb + 22.0 * sheen[..., None] * shade[..., None]
        return _Drawing(rgb=rgb, alpha=alpha, loops=_ear_loops(top, bottom, 0.9) if options.get("ear_loops", True) else [],
                        loop_colour=(25, 25, 28))
    base = _resolve_colour(colour, CLOTH_COLOURS, rng)
    pattern = options.get("pattern")
    if pattern is None:
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    if pattern not in PATTERNS:
        raise ValueError(f"Unknown cloth pattern {pattern!r}: use one of {', '.join(PATTERNS)}.")
    second = options.get("pattern_colour")
    if second is None:
        candidates = [c for c in CLOTH_COLOURS if np.abs(np.array(c) - base).sum() > 150] or [(245, 245, 240)]
        second = candidates[int(rng.integers(len(candidates)))]
    second = _resolve_colour(second, CLOTH_COLOURS, rng)
    amount = {"plain": lambda p, g: np.zeros_like(p.s), "stripes": _stripes, "dots": _dots, "checks": _checks}[pattern](plane, rng)
    rgb = base[None, None, :] * (1 - amount[..., None]) + second[None, None, :] * amount[..., None]
    rgb = rgb * shade[..., None]
    options["pattern"] = pattern
    loops = _ear_loops(top, bottom, 0.9) if options.get("ear_loops", True) else []
    return _Drawing(rgb=rgb, alpha=alpha, loops=loops, loop_colour=tuple(base * 0.8))


def _valve(plane, rgb, alpha, frame, centre_s, centre_r, radius_r):
    """A round exhalation valve: a grey disc with a rim and slits."""
    ds = (plane.s - centre_s) * plane.aspect
    dr = plane.r - centre_r
    distance = np.hypot(ds, dr) / radius_r
    disc = 1 - _smoothstep(0.95, 1.02, distance)
    rim = np.exp(-(((distance - 0.85) / 0.08) ** 2))
    slits = (np.mod(dr / radius_r * 4, 1.0) < 0.35) * (distance < 0.6)
    valve_shade = 0.95 - 0.35 * np.clip(dr / radius_r, -1, 1) * 0.5 - 0.25 * rim - 0.25 * slits
    valve_rgb = np.array([150, 152, 158], np.float32)[None, None, :] * valve_shade[..., None]
    rgb[:] = rgb * (1 - disc[..., None]) + valve_rgb * disc[..., None]
    alpha[:] = np.maximum(alpha, disc)


def _draw_n95(plane, frame, top, bottom, rng, colour, options) -> _Drawing:
    base = _resolve_colour(colour, RESPIRATOR_COLOURS, rng)
    alpha = plane.fill(_outline("n95", top, bottom))
    height = bottom - top
    centre_r = (top + bottom) / 2 + 0.03 * height
    radial = np.clip(np.hypot(plane.s / 0.9, (plane.r - centre_r) / (height / 2)), 0, 1)
    # The cup bulges towards the camera: bright in the middle, darker towards the rim,
    # with the light falling from above.
    dome = 0.74 + 0.3 * np.sqrt(1 - radial**2) - 0.08 * np.clip((plane.r - centre_r) / (height / 2), -1, 1)
    # Moulded rim: a raised band just inside the outline.
    inset = _edge_distance(alpha) / plane.pixels_per_r() / height
    rim = np.exp(-(((inset - 0.05) / 0.018) ** 2))
    edge = np.exp(-((inset / 0.015) ** 2))
    shade = dome * _shading(plane, frame, top, bottom, 0.8) * _fabric_noise(plane, rng, 0.03, grain=0.6)
    shade *= 1 + 0.10 * rim - 0.2 * edge
    rgb = base[None, None, :] * shade[..., None]
    if options.get("valve", False):
        _valve(plane, rgb, alpha, frame, 0.42, top + 0.62 * height, 0.13 * height)
    loops = []
    if options.get("straps", True):
        loops = [(0.86, top + 0.25 * height, 1.6, top - 0.2 * height, "strap"),
                 (0.84, top + 0.75 * height, 1.6, bottom + 0.05 * height, "strap")]
    return _Drawing(rgb=rgb, alpha=alpha, loops=loops, loop_colour=(235, 205, 90))


def _draw_kn95(plane, frame, top, bottom, rng, colour, options) -> _Drawing:
    base = _resolve_colour(colour, RESPIRATOR_COLOURS, rng)
    alpha = plane.fill(_outline("kn95", top, bottom))
    height = bottom - top
    # Two flat panels meeting at the centre seam, each lit by how much it faces the camera.
    panel_angle = np.where(plane.s < 0, -0.45, 0.45)
    panel = 0.86 + 0.16 * np.cos(panel_angle + frame.yaw + plane.s * 0.6)
    seam_distance = np.abs(plane.s) * plane.aspect / height
    seam = np.exp(-((seam_distance / 0.01) ** 2))
    inset = _edge_distance(alpha) / plane.pixels_per_r() / height
    # Heat-welded border: a dotted line just inside the outline.
    weld_line = np.exp(-(((inset - 0.045) / 0.012) ** 2))
    dots = 0.5 + 0.5 * np.cos((plane.s * plane.aspect + plane.r) / height * 140)
    shade = panel * _shading(plane, frame, top, bottom, 0.7) * _fabric_noise(plane, rng, 0.025, grain=0.6)
    shade *= 1 - 0.28 * seam - 0.15 * weld_line * dots
    rgb = base[None, None, :] * shade[..., None]
    if options.get("valve", False):
        _valve(plane, rgb, alpha, frame, 0.45, top + 0.6 * height, 0.12 * height)
    loops = _ear_loops(top, bottom, 0.93) if options.get("ear_loops", True) else []
    return _Drawing(rgb=rgb, alpha=alpha, loops=loops, loop_colour=tuple(np.minimum(base * 1.02, 255)))


def _draw_transparent(plane, frame, top, bottom, rng, colour, options) -> _Drawing:
    drawing = _draw_cloth(plane, frame, top, bottom, rng, colour, {"pattern": "plain", "ear_loops": options.get("ear_loops", True)})
    height = bottom - top
    # Clear panel: a rounded rectangle over the mouth, from under the nose to below the lips.
    panel_top = min(frame.r_nose + 0.12, 0.82)
    panel_bottom = 1.0 + 0.32 * CHIN_FRACTION / 0.6
    half_width = 0.56
    ds = np.maximum(np.abs(plane.s) - half_width, 0) * plane.aspect
    centre = (panel_top + panel_bottom) / 2
    dr = np.maximum(np.abs(plane.r - centre) - (panel_bottom - panel_top) / 2, 0)
    corner = 0.1 * height
    outside = np.hypot(ds, dr)
    window = 1 - _smoothstep(0.0, 0.03, outside - corner * 0.0)
    window *= (np.abs(plane.s) < half_width + corner / plane.aspect) * (np.abs(plane.r - centre) < (panel_bottom - panel_top) / 2 + corner)
    # Specular streaks: two soft diagonal bands, placed by the seed.
    glare_strength = float(options.get("glare", 1.0))
    offset = float(rng.uniform(-0.25, 0.1))
    diagonal = (plane.s + offset) * plane.aspect - 0.6 * (plane.r - centre)
    glare = 0.9 * np.exp(-((diagonal / 0.05) ** 2)) + 0.45 * np.exp(-(((diagonal - 0.16) / 0.025) ** 2))
    glare *= np.exp(-(((plane.r - centre) / 0.35) ** 2)) * glare_strength
    # The plastic's rim catches light.
    rim = np.exp(-(((outside - 0.012) / 0.012) ** 2)) * (1 - window)
    drawing.rgb = drawing.rgb * (1 - 0.5 * rim[..., None]) + 200 * rim[..., None] * 0.5
    drawing.window = window * drawing.alpha
    drawing.glare = glare * drawing.window
    options["glare"] = glare_strength
    return drawing


def _ear_loops(top, bottom, side) -> list:
    height = bottom - top
    return [
        (side, top + 0.18 * height, 1.55, top + 0.05 * height, "loop"),
        (side * 0.95, top + 0.72 * height, 1.55, top + 0.05 * height, "loop"),
    ]


_DRAWERS = {
    "surgical": _draw_surgical,
    "cloth": _draw_cloth,
    "n95": _draw_n95,
    "kn95": _draw_kn95,
    "black": lambda plane, frame, top, bottom, rng, colour, options: _draw_cloth(plane, frame, top, bottom, rng, colour, options, black=True),
    "transparent": _draw_transparent,
}


def _placement(mask_type: str, frame: FaceFrame, coverage: float) -> tuple[float, float, str]:
    """Top and bottom heights (in ``r``) and the drawing style of a mask type."""
    chin = 1.0 + CHIN_FRACTION
    r_nose = float(np.clip(frame.r_nose, 0.3, 0.85))
    mouth_top = 1.0 + min(0.0, float(np.min(frame.r_landmarks[3:]) - 1.0))
    if mask_type == "below_nose":
        top = r_nose + 0.35 * (mouth_top - r_nose)
        bottom = chin + 0.1
    elif mask_type == "on_chin":
        top = float(np.max(frame.r_landmarks[3:])) + 0.22 * CHIN_FRACTION
        bottom = chin + 0.22
    else:
        # The nose bridge: halfway between the eye line and the nose tip; coverage moves it.
        top = 0.5 * r_nose - (coverage - 1.0) * 0.5 * r_nose
        top = float(np.clip(top, 0.2 * r_nose, r_nose - 0.1))
        bottom = chin + 0.08 + (coverage - 1.0) * 0.3
    return top, bottom, mask_type


def apply_mask(
    image: np.ndarray,
    landmarks: np.ndarray,
    mask_type: str = "surgical",
    seed: int = 0,
    colour=None,
    coverage: float = 1.0,
    **options: Any,
) -> MaskedFace:
    """Draw a synthetic mask on a face.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB image; it is not modified.
    landmarks : (5, 2) array
        ``(x, y)`` pixel coordinates of the face's landmarks in
        :data:`course_lib.faces.LANDMARK_NAMES` order, as returned by
        :func:`course_lib.faces.detect_faces`.
    mask_type : str
        One of :data:`MASK_TYPES`.
    seed : int
        Seeds every random choice (colour, pattern, fabric grain, glare):
        the same seed gives the same pixels.
    colour : (R, G, B) tuple of int in 0-255, or str, optional
        Main colour of the mask (the frame of the transparent mask). A name
        from :data:`SURGICAL_COLOURS` or a matplotlib colour name also works.
        By default a colour is drawn from the type's palette.
    coverage : float in [0.7, 1.3]
        How high the mask rises on the nose and how far below the chin it
        reaches: 1 sits on the nose bridge, 0.7 halfway down the nose. It does
        not apply to the incorrectly worn types.
    **options
        Style options:

        * ``surgical``: ``pleats`` (int, 0-6, default 3), ``ear_loops`` (bool);
        * ``cloth``: ``pattern`` (one of :data:`PATTERNS`, default drawn by
          the seed), ``pattern_colour``, ``ear_loops``;
        * ``n95``: ``valve`` (bool, default False), ``straps`` (bool);
        * ``kn95``: ``valve`` (bool, default False), ``ear_loops``;
        * ``black``: ``ear_loops``;
        * ``transparent``: ``glare`` (float, 0 for none, default 1), ``ear_loops``;
        * ``below_nose`` and ``on_chin``: ``base``, the style that is worn
          incorrectly (``"surgical"`` by default, or ``"cloth"``, ``"n95"``,
          ``"kn95"``, ``"black"``), plus that style's options.

    Returns
    -------
    MaskedFace

    Raises
    ------
    ValueError
        Unknown mask type, option or colour; coverage out of range; or
        degenerate landmarks.
    """
    import cv2

    if mask_type not in MASK_TYPES:
        raise ValueError(f"Unknown mask type {mask_type!r}: use one of {', '.join(MASK_TYPES)}.")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) uint8 RGB image, got shape {image.shape} and dtype {image.dtype}.")
    if not 0.7 <= coverage <= 1.3:
        raise ValueError(f"coverage={coverage} is out of range; use a value between 0.7 and 1.3 (1 is a normal fit).")
    options = dict(options)
    style = mask_type
    if mask_type in ("below_nose", "on_chin"):
        style = options.pop("base", "surgical")
        if style not in _DRAWERS or style == "transparent":
            raise ValueError(f"base={style!r} is not a style that can be worn incorrectly; use surgical, cloth, n95, kn95 or black.")
        allowed = _OPTIONS[style]
    else:
        allowed = _OPTIONS[mask_type]
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(sorted(unknown))} for mask type {mask_type!r}; "
            f"it accepts: {', '.join(sorted(allowed | ({'base'} if style != mask_type else set()))) or 'none'}."
        )

    frame = face_frame(landmarks)
    rng = np.random.default_rng(seed)
    top, bottom, _ = _placement(mask_type, frame, coverage)

    # Raster the mask plane at about the image resolution of the mask, at least 96 columns.
    scale_s = frame.radius * _HALF_ANGLE * math.cos(frame.yaw)  # image pixels per unit of s at the centre
    scale_r = float(np.hypot(*frame.w))
    cols = int(np.clip(2 * _S_RANGE * scale_s * 1.5, 96, 640))
    rows = int(np.clip((_R_RANGE[1] - _R_RANGE[0]) * scale_r * 1.5, 96, 640))
    plane = _Plane(rows=rows, cols=cols, aspect=scale_s / scale_r)

    drawing = _DRAWERS[style](plane, frame, top, bottom, rng, colour, options)
    if style != mask_type:
        options["base"] = style
    # Soften the edge: blur the coverage by about half an image pixel.
    blur = max(0.6, 0.5 * cols / max(2 * _S_RANGE * scale_s, 1.0))
    drawing.alpha = cv2.GaussianBlur(drawing.alpha, (0, 0), blur)
    edge = np.clip(drawing.alpha * 2.5, 0, 1)
    drawing.rgb = drawing.rgb * (0.82 + 0.18 * edge[..., None])

    # Warp the plane onto the face, inside the bounding box of the mask.
    height, width = image.shape[:2]
    border_s = np.concatenate([np.linspace(-_S_RANGE, _S_RANGE, 30), np.full(30, _S_RANGE), np.linspace(_S_RANGE, -_S_RANGE, 30), np.full(30, -_S_RANGE)])
    border_r = np.concatenate([np.full(30, top - 0.05), np.linspace(top, bottom + 0.05, 30), np.full(30, bottom + 0.05), np.linspace(bottom, top, 30)])
    corners = frame.to_image(border_s, border_r)
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    result = image.copy()
    region = np.zeros((height, width), bool)
    colour_used = tuple(int(round(v)) for v in np.clip(np.median(drawing.rgb[drawing.alpha > 0.5], axis=0), 0, 255)) if np.any(drawing.alpha > 0.5) else (0, 0, 0)
    if x1 > x0 and y1 > y0:
        ys, xs = np.mgrid[y0:y1, x0:x1]
        s, r, visible = frame.to_plane(np.stack([xs + 0.0, ys + 0.0], axis=-1))
        pixels = plane.to_pixels(s, r).astype(np.float32)
        pixels[~visible] = -10
        layers = np.dstack([drawing.rgb, drawing.alpha]).astype(np.float32)
        warped = cv2.remap(layers, pixels[..., 0], pixels[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.clip(warped[..., 3], 0, 1)
        mask_rgb = warped[..., :3]
        patch = image[y0:y1, x0:x1].astype(np.float32)
        if drawing.window is not None:
            extra = np.dstack([drawing.window, drawing.glare, np.zeros_like(drawing.window)]).astype(np.float32)
            extra = cv2.remap(extra, pixels[..., 0], pixels[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            window, glare = np.clip(extra[..., 0], 0, 1), np.clip(extra[..., 1], 0, 1)
            # Through the clear panel: the face, slightly dimmed and tinted, a faint
            # mirrored reflection of the surroundings, and the specular glare.
            reflection = cv2.GaussianBlur(patch[:, ::-1], (0, 0), max(2.0, 0.05 * (x1 - x0)))
            seen = patch * np.array([0.86, 0.9, 0.93], np.float32) + 0.12 * reflection
            seen = seen + 255 * glare[..., None]
            mask_rgb = mask_rgb * (1 - window[..., None]) + np.clip(seen, 0, 255) * window[..., None]
        blended = patch * (1 - alpha[..., None]) + mask_rgb * alpha[..., None]
        result[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        region[y0:y1, x0:x1] = alpha >= 0.5
    _draw_loops(result, frame, drawing, region)
    return MaskedFace(
        image=result,
        region=region,
        mask_type=mask_type,
        correctly_worn=CORRECTLY_WORN[mask_type],
        colour=colour_used,
        options=options,
    )


def _draw_loops(image: np.ndarray, frame: FaceFrame, drawing: _Drawing, region: np.ndarray) -> None:
    """Draw ear loops or straps from the mask's sides towards the ears, outside the mask body."""
    import cv2

    if not drawing.loops:
        return
    thickness = max(1, int(round(frame.eye_distance / 28)))
    layer = np.zeros(image.shape[:2], np.uint8)
    for side in (-1, 1):
        for start_s, start_r, end_s, end_r, kind in drawing.loops:
            t = np.linspace(0, 1, 24)
            s = side * (start_s + (end_s - start_s) * t)
            r = start_r + (end_r - start_r) * t - 0.08 * np.sin(np.pi * t)
            # Stop where the loop would pass behind the head.
            angle = s * _HALF_ANGLE + frame.yaw
            visible = np.abs(angle) < math.pi / 2 * 0.98
            if kind == "loop":
                visible &= np.abs(s) <= np.pi / 2 / _HALF_ANGLE
            points = frame.to_image(s[visible], r[visible])
            if len(points) < 2:
                continue
            cv2.polylines(layer, [np.round(points * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, shift=4)
    alpha = (layer.astype(np.float32) / 255.0) * (~region)
    colour = np.array(drawing.loop_colour, np.float32)
    image[:] = np.clip(image * (1 - alpha[..., None]) + colour * 0.92 * alpha[..., None] + 0.5, 0, 255).astype(np.uint8)


# --- convenience --------------------------------------------------------------------


def mask_face(
    image: np.ndarray,
    mask_type: str = "surgical",
    seed: int = 0,
    detection=None,
    min_score: float = 0.9,
    min_eye_distance: float = 8.0,
    **kwargs: Any,
) -> MaskedFace | NoFace:
    """Detect the largest face and draw a mask on it.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    mask_type, seed
        As in :func:`apply_mask`.
    detection : course_lib.faces.FaceDetection, optional
        A face found earlier; when omitted,
        :func:`course_lib.faces.detect_largest_face` is run.
    min_score : float
        Faces with a lower detector confidence are rejected.
    min_eye_distance : float
        Faces whose eyes are closer than this, in pixels, are rejected as too small.
    **kwargs
        Passed to :func:`apply_mask` (``colour``, ``coverage``, style options).

    Returns
    -------
    MaskedFace or NoFace
        ``result.ok`` tells them apart; ``NoFace.reason`` says why nothing was drawn.
    """
    if detection is None:
        from .faces import detect_largest_face

        detection = detect_largest_face(image, min_score=0.0)
        if detection is None:
            return NoFace("no face found")
    score = float(detection.score)
    if score < min_score:
        return NoFace(f"low confidence ({score:.2f} < {min_score:.2f})", score=score)
    landmarks = np.asarray(detection.landmarks, dtype=np.float64)
    eye_distance = float(np.hypot(*(landmarks[1] - landmarks[0])))
    if eye_distance < min_eye_distance:
        return NoFace(f"face too small (eye distance {eye_distance:.1f} px < {min_eye_distance:g} px)", score=score)
    try:
        face_frame(landmarks)
    except ValueError as error:
        return NoFace(f"implausible landmarks ({error})", score=score)
    return apply_mask(image, landmarks, mask_type=mask_type, seed=seed, **kwargs)


def occlusion_fraction(region: np.ndarray, box) -> float:
    """Fraction of a box's pixels that a region covers.

    Parameters
    ----------
    region : (H, W) ndarray of bool
        For example ``MaskedFace.region``.
    box : (4,) array
        ``(x_min, y_min, x_max, y_max)`` in pixels; the box covers pixels with
        ``x_min <= x < x_max`` and ``y_min <= y < y_max`` (fractional edges are
        rounded to the nearest pixel) and is clipped to the image.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        When the box is empty after clipping.
    """
    region = np.asarray(region, dtype=bool)
    if region.ndim != 2:
        raise ValueError(f"Expected an (H, W) boolean region, got shape {region.shape}.")
    x_min, y_min, x_max, y_max = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    height, width = region.shape
    columns = slice(max(0, int(round(x_min))), min(width, int(round(x_max))))
    rows = slice(max(0, int(round(y_min))), min(height, int(round(y_max))))
    patch = region[rows, columns]
    if patch.size == 0:
        raise ValueError(f"The box {(x_min, y_min, x_max, y_max)} holds no pixels of a {width}x{height} region; check its order (x_min, y_min, x_max, y_max).")
    return float(patch.mean())


def landmark_covered(masked: MaskedFace, landmarks: np.ndarray) -> dict[str, bool]:
    """Say which landmarks lie inside the mask region, by name."""
    from .faces import LANDMARK_NAMES

    points = np.asarray(landmarks, dtype=np.float64)
    height, width = masked.region.shape
    covered = {}
    for name, (x, y) in zip(LANDMARK_NAMES, points):
        col, row = int(round(x)), int(round(y))
        covered[name] = bool(0 <= row < height and 0 <= col < width and masked.region[row, col])
    return covered


def measure_speed(images: list[np.ndarray], mask_types=MASK_TYPES, repeats: int = 1) -> dict[str, float]:
    """Measure masked faces per second on the current process, with and without detection.

    Parameters
    ----------
    images : list of (H, W, 3) uint8 arrays
        Face images (for example LFW images).
    mask_types : sequence of str
        Cycled over the images.
    repeats : int
        Passes over the images for the drawing-only timing.

    Returns
    -------
    dict
        ``faces``: faces drawn; ``draw_per_second``: masks per second given
        the landmarks; ``detect_and_draw_per_second``: per second including
        MTCNN detection; ``per_type_ms``: mean drawing time per mask type.
    """
    from .faces import detect_largest_face

    detect_largest_face(images[0])  # load the detector outside the timing
    start = time.perf_counter()
    detections = [detect_largest_face(image) for image in images]
    detect_seconds = time.perf_counter() - start
    pairs = [(image, d) for image, d in zip(images, detections) if d is not None]
    per_type: dict[str, list[float]] = {name: [] for name in mask_types}
    start = time.perf_counter()
    count = 0
    for _ in range(repeats):
        for index, (image, detection) in enumerate(pairs):
            name = mask_types[(index + count) % len(mask_types)]
            begin = time.perf_counter()
            apply_mask(image, detection.landmarks, name, seed=index)
            per_type[name].append(time.perf_counter() - begin)
        count += len(pairs)
    draw_seconds = time.perf_counter() - start
    draw_each = draw_seconds / max(count, 1)
    detect_each = detect_seconds / max(len(images), 1)
    return {
        "faces": float(count),
        "draw_per_second": 1.0 / draw_each if draw_each else float("inf"),
        "detect_and_draw_per_second": 1.0 / (draw_each + detect_each),
        "per_type_ms": {name: 1000 * float(np.mean(v)) for name, v in per_type.items() if v},
    }
