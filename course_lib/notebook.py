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
