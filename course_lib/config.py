"""Course settings: where data lives, where derived files go, quick or full mode.

Every setting is read from an environment variable when it is requested, so a
notebook can change it with ``os.environ`` before calling the library:

``MFR_DATA_DIR``
    Root folder of the datasets. Each dataset sits in its own sub-folder laid
    out as its upstream archive extracts (``lfw/``, ``fmd/``, ...). It may be
    read-only. Default: ``<user cache>/mfr-course/data``.
``MFR_CACHE_DIR``
    Writable folder for derived files: downloaded archives, resized arrays,
    synthetic masked copies, trained models. Default:
    ``<user cache>/mfr-course/cache``.
``MFR_QUICK``
    ``1`` selects quick mode (small subsets and few epochs, used by CI and on
    Binder); ``0`` or unset selects full mode.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from pathlib import Path

import numpy as np
import platformdirs

log = logging.getLogger(__name__)

DATA_DIR_VARIABLE = "MFR_DATA_DIR"
CACHE_DIR_VARIABLE = "MFR_CACHE_DIR"
QUICK_MODE_VARIABLE = "MFR_QUICK"

_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off", ""}


def _user_cache_root() -> Path:
    return Path(platformdirs.user_cache_dir("mfr-course", appauthor=False))


def data_dir() -> Path:
    """Return the dataset root folder (``MFR_DATA_DIR``), without creating it."""
    value = os.environ.get(DATA_DIR_VARIABLE)
    if value:
        return Path(value).expanduser().resolve()
    return _user_cache_root() / "data"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return the writable cache folder (``MFR_CACHE_DIR``) or a sub-folder of it.

    Parameters
    ----------
    *parts : str
        Sub-folder names appended to the cache root, for example
        ``cache_dir("masked", "lfw")``.
    create : bool
        Create the folder (and its parents) when it does not exist.
    """
    value = os.environ.get(CACHE_DIR_VARIABLE)
    root = Path(value).expanduser().resolve() if value else _user_cache_root() / "cache"
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def quick_mode() -> bool:
    """Return True when ``MFR_QUICK`` selects quick mode.

    Raises
    ------
    ValueError
        If the variable holds something other than 1/0, true/false, yes/no, on/off.
    """
    value = os.environ.get(QUICK_MODE_VARIABLE, "0").strip().lower()
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    raise ValueError(
        f"{QUICK_MODE_VARIABLE}={value!r} is not a valid setting: "
        f"use {QUICK_MODE_VARIABLE}=1 for quick mode or {QUICK_MODE_VARIABLE}=0 for full mode."
    )


def pick(quick, full):
    """Return ``quick`` in quick mode and ``full`` otherwise.

    Notebooks use it for sizes that differ between modes, for example
    ``epochs = pick(quick=2, full=30)``.
    """
    return quick if quick_mode() else full


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global generator, TensorFlow and Keras.

    TensorFlow is seeded only when it is already imported or importable, so the
    shallow-descriptor notebooks do not pay for importing it. Ops on a GPU can
    still be non-deterministic unless ``tf.config.experimental.enable_op_determinism()``
    is also called.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import keras
    except ImportError:
        return
    keras.utils.set_random_seed(seed)


@dataclasses.dataclass(frozen=True)
class DeviceReport:
    """What TensorFlow will run on."""

    tensorflow_version: str
    keras_version: str
    gpus: tuple[str, ...]
    cpu_count: int
    mixed_precision: bool

    @property
    def accelerator(self) -> str:
        return "GPU" if self.gpus else "CPU"

    def __str__(self) -> str:
        devices = ", ".join(self.gpus) if self.gpus else "none"
        return (
            f"TensorFlow {self.tensorflow_version}, Keras {self.keras_version}\n"
            f"Accelerator: {self.accelerator} (GPUs: {devices}; CPU cores: {self.cpu_count})\n"
            f"Mixed precision: {'on' if self.mixed_precision else 'off'}"
        )


def device_report(enable_mixed_precision: bool = True) -> DeviceReport:
    """Report the device TensorFlow sees and set the Keras precision policy.

    Mixed precision (``mixed_float16``) is switched on only when a GPU is
    present and ``enable_mixed_precision`` is True, because on a CPU float16
    arithmetic is emulated and slower than float32.
    """
    import keras
    import tensorflow as tf

    gpus = tuple(device.name for device in tf.config.list_physical_devices("GPU"))
    use_mixed = bool(gpus) and enable_mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return DeviceReport(
        tensorflow_version=tf.__version__,
        keras_version=keras.__version__,
        gpus=gpus,
        cpu_count=os.cpu_count() or 1,
        mixed_precision=use_mixed,
    )
