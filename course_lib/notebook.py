"""Set-up shared by every notebook: quiet logs, seeds, a consistent look."""

from __future__ import annotations

import logging
import os
import warnings

from .config import quick_mode, seed_everything


def setup_notebook(seed: int = 0, verbose: bool = True) -> None:
    """Prepare a notebook session.

    Silences TensorFlow's C++ and Python start-up logs (they differ between
    machines and would make stored outputs change), seeds Python, NumPy and
    TensorFlow, sets the matplotlib style used by every figure of the course,
    and prints whether quick mode is on.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("course_lib").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    _import_tensorflow_quietly()

    import matplotlib

    matplotlib.rcParams.update(
        {
            "figure.dpi": 80,
            "figure.figsize": (8, 4),
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": "gray",
        }
    )
    seed_everything(seed)
    if verbose:
        mode = "quick (MFR_QUICK=1: small subsets, few epochs)" if quick_mode() else "full (MFR_QUICK=0)"
        print(f"Mode: {mode}")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's standard error silenced.

    TensorFlow 2.16 and later print absl and CUDA-probe lines to file
    descriptor 2 during import, before ``TF_CPP_MIN_LOG_LEVEL`` is read, so the
    descriptor itself is redirected to the null device for the import.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    try:
        stderr_fd = sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):
        stderr_fd = 2
    saved = os.dup(stderr_fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), stderr_fd)
            try:
                import keras  # noqa: F401
                import tensorflow  # noqa: F401
            except ImportError:
                pass
    finally:
        os.dup2(saved, stderr_fd)
        os.close(saved)
