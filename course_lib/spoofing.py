"""Simulated presentation attacks: a printed photo held up to the camera.

A presentation attack shows the camera an artefact (a printed photo, a phone
screen, a mask) instead of a live face. :func:`simulate_print_attack` imitates
the simplest one, a print replay, by putting a face image through the changes
that printing and recapturing cause:

1. colour shift: printers and cameras compress the colour gamut and shift the
   white balance;
2. perspective warp: the sheet is held at a slight angle to the camera;
3. moire pattern: the printer's halftone grid beats against the camera's
   pixel grid and leaves faint interference stripes;
4. blur: the camera is slightly out of focus on the sheet;
5. sensor noise and JPEG recompression by the capturing device.

The result still shows the same face, which is why a recogniser accepts it:
recognition answers "whose face is this?", not "is a live person there?".
Presentation attack detection (liveness) is a separate test.

The simulation is a teaching aid with hand-picked parameters, not a model of
any particular printer or camera.
"""

from __future__ import annotations

import dataclasses

import numpy as np

REPLAY_STEPS = ("original", "colour shift", "perspective", "moire", "blur", "noise + JPEG")
"""Names of the images returned by :func:`simulate_print_attack` with ``return_steps=True``, in order."""


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    """Strength of each change of :func:`simulate_print_attack`.

    Attributes
    ----------
    saturation : float
        Factor applied to the colour saturation (1 keeps it).
    max_gain : float
        Largest per-channel gain change, as a fraction (0.08 is up to 8%).
    max_tilt : float
        Largest corner displacement of the perspective warp, as a fraction of
        the image side.
    moire_amplitude : float
        Peak amplitude of the interference stripes, as a fraction of intensity.
    moire_period : float
        Period of the stripes, in pixels.
    blur_sigma : float
        Standard deviation of the Gaussian defocus, in pixels.
    noise_sigma : float
        Standard deviation of the sensor noise, in grey levels (0 to 255).
    jpeg_quality : int
        Quality of the JPEG recompression, 1 to 100.
    """

    saturation: float = 0.8
    max_gain: float = 0.08
    max_tilt: float = 0.06
    moire_amplitude: float = 0.06
    moire_period: float = 3.5
    blur_sigma: float = 1.0
    noise_sigma: float = 3.0
    jpeg_quality: int = 60


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got dtype {image.dtype} and shape {image.shape}.")
    return image


def _colour_shift(image: np.ndarray, settings: ReplaySettings, generator: np.random.Generator) -> np.ndarray:
    values = image.astype(np.float32)
    gray = values.mean(axis=2, keepdims=True)
    values = gray + settings.saturation * (values - gray)
    gains = 1.0 + generator.uniform(-settings.max_gain, settings.max_gain, size=3)
    # A print cannot show pure black or white: the tones are squeezed into a narrower range.
    values = 12.0 + values * gains * (230.0 / 255.0)
    return np.clip(values, 0, 255).astype(np.uint8)


def _perspective(image: np.ndarray, settings: ReplaySettings, generator: np.random.Generator) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    shift = generator.uniform(-settings.max_tilt, settings.max_tilt, size=(4, 2)) * np.array([width, height])
    matrix = cv2.getPerspectiveTransform(corners, (corners + shift).astype(np.float32))
    # The border around the warped sheet is a light grey, like the paper margin or the wall behind it.
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(200, 200, 195))


def _moire(image: np.ndarray, settings: ReplaySettings, generator: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = generator.uniform(0, np.pi)
    # Two gratings with slightly different angle and period beat into the coarse stripes of a moire pattern.
    first = np.cos(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / settings.moire_period)
    second = np.cos(2 * np.pi * (cols * np.cos(angle + 0.08) + rows * np.sin(angle + 0.08)) / (settings.moire_period * 1.04))
    pattern = 1.0 + settings.moire_amplitude * 0.5 * (first + second)
    return np.clip(image.astype(np.float32) * pattern[:, :, None], 0, 255).astype(np.uint8)


def _blur(image: np.ndarray, settings: ReplaySettings) -> np.ndarray:
    import cv2

    if settings.blur_sigma <= 0:
        return image.copy()
    return cv2.GaussianBlur(image, (0, 0), sigmaX=settings.blur_sigma)


def _noise_and_jpeg(image: np.ndarray, settings: ReplaySettings, generator: np.random.Generator) -> np.ndarray:
    import cv2

    noisy = image.astype(np.float32) + generator.normal(0.0, settings.noise_sigma, size=image.shape)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(settings.jpeg_quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode the image as JPEG.")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def simulate_print_attack(
    image: np.ndarray, seed: int = 0, settings: ReplaySettings | None = None, return_steps: bool = False
) -> np.ndarray | list[np.ndarray]:
    """Simulate a printed-photo replay: the image as a camera would see it on paper.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB face image (for example an aligned face).
    seed : int
        Seed of the random tilt, colour gains, stripe angle and noise; the same
        seed gives the same output.
    settings : ReplaySettings, optional
        Strength of each change (default: ``ReplaySettings()``).
    return_steps : bool
        Return the image after each step (named by :data:`REPLAY_STEPS`)
        instead of the final image only.

    Returns
    -------
    (H, W, 3) ndarray of uint8, or list of them
        The recaptured image, or the list of intermediate images starting with
        a copy of the input.
    """
    image = _check_image(image)
    settings = ReplaySettings() if settings is None else settings
    if not 1 <= settings.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be between 1 and 100, got {settings.jpeg_quality}.")
    generator = np.random.default_rng(seed)

    steps = [image.copy()]
    steps.append(_colour_shift(steps[-1], settings, generator))
    steps.append(_perspective(steps[-1], settings, generator))
    steps.append(_moire(steps[-1], settings, generator))
    steps.append(_blur(steps[-1], settings))
    steps.append(_noise_and_jpeg(steps[-1], settings, generator))
    return steps if return_steps else steps[-1]


def high_frequency_ratio(image: np.ndarray, cutoff: float = 0.25) -> float:
    """Share of the spectral energy above a spatial frequency, a crude texture cue.

    Recapture changes the high frequencies of an image (blur removes detail,
    moire and halftone add narrow peaks), which is one of the cues that
    texture-based liveness detectors learn from data. This single number is
    only an illustration of such a cue, not a liveness detector.

    Parameters
    ----------
    image : (H, W, 3) or (H, W) ndarray of uint8
    cutoff : float
        Radius, as a fraction of the Nyquist frequency, above which energy counts
        as high-frequency.

    Returns
    -------
    float
        Energy above ``cutoff`` divided by the total energy without the mean, in ``[0, 1]``.
    """
    gray = np.asarray(image, dtype=np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    gray = gray - gray.mean()
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray))) ** 2
    height, width = gray.shape
    fy = (np.arange(height) - height // 2) / (height / 2)
    fx = (np.arange(width) - width // 2) / (width / 2)
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    total = power.sum()
    if total == 0:
        return 0.0
    return float(power[radius > cutoff].sum() / total)


# --- continuous authentication --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TakeoverResult:
    """Outcome of :func:`simulate_takeover` for one re-verification interval.

    Attributes
    ----------
    check_every : int
        Frames between two verifications.
    checks_per_session : float
        Mean number of verifications run per session (compute cost).
    false_lock_rate : float
        Fraction of sessions locked while the legitimate user was still there.
    detection_delay : float
        Mean number of frames the impostor used the session before it was
        locked, over the sessions that reached the takeover.
    missed_rate : float
        Fraction of takeovers never detected before the session ended.
    """

    check_every: int
    checks_per_session: float
    false_lock_rate: float
    detection_delay: float
    missed_rate: float


def simulate_takeover(
    genuine_scores: np.ndarray,
    impostor_scores: np.ndarray,
    threshold: float,
    check_every: int,
    frames: int = 600,
    takeover_frame: int = 300,
    sessions: int = 500,
    failures_to_lock: int = 1,
    seed: int = 0,
) -> TakeoverResult:
    """Simulate continuous authentication of remote sessions that an impostor takes over.

    In each session the legitimate user sits at the camera until
    ``takeover_frame``, then someone else does. Every ``check_every`` frames
    the system verifies the face: the score is drawn from ``genuine_scores``
    while the user is there and from ``impostor_scores`` after the takeover,
    and ``failures_to_lock`` scores below ``threshold`` in a row lock the session. Scores are drawn with
    replacement from the measured ones, so the simulation inherits the
    recogniser's FNMR (false locks) and FMR (missed impostors).

    Parameters
    ----------
    genuine_scores, impostor_scores : (N,) array_like of float
        Measured comparison scores.
    threshold : float
    check_every : int
        Frames between verifications, at least 1.
    frames, takeover_frame : int
        Length of a session and the frame where the impostor takes over.
    sessions : int
        Number of simulated sessions.
    failures_to_lock : int
        Consecutive failed verifications that lock the session; more tolerate
        occasional false non-matches but let an impostor stay longer.
    seed : int

    Returns
    -------
    TakeoverResult
    """
    if check_every < 1:
        raise ValueError(f"check_every must be at least 1 frame, got {check_every}.")
    if not 0 < takeover_frame < frames:
        raise ValueError(f"takeover_frame must lie between 0 and frames={frames}, got {takeover_frame}.")
    genuine = np.asarray(genuine_scores, dtype=np.float64)
    impostor = np.asarray(impostor_scores, dtype=np.float64)
    if failures_to_lock < 1:
        raise ValueError(f"failures_to_lock must be at least 1, got {failures_to_lock}.")
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("Both genuine and impostor scores are needed to simulate a session.")
    generator = np.random.default_rng(seed)
    check_frames = np.arange(check_every - 1, frames, check_every)
    before = check_frames < takeover_frame

    false_locks, delays, missed, checks = 0, [], 0, 0
    for _ in range(sessions):
        scores = np.where(
            before, generator.choice(genuine, size=check_frames.size), generator.choice(impostor, size=check_frames.size)
        )
        lock = _first_run(scores < threshold, failures_to_lock)
        if lock is not None and before[lock]:
            false_locks += 1
            checks += lock + 1
            continue
        if lock is not None:
            delays.append(int(check_frames[lock]) - takeover_frame + 1)
            checks += lock + 1
        else:
            missed += 1
            checks += check_frames.size
    reached = sessions - false_locks
    return TakeoverResult(
        check_every=int(check_every),
        checks_per_session=checks / sessions,
        false_lock_rate=false_locks / sessions,
        detection_delay=float(np.mean(delays)) if delays else float("nan"),
        missed_rate=missed / reached if reached else float("nan"),
    )


def _first_run(failed: np.ndarray, length: int) -> int | None:
    """Return the index that completes the first run of ``length`` True values, or None."""
    run = 0
    for index, value in enumerate(failed):
        run = run + 1 if value else 0
        if run >= length:
            return index
    return None
