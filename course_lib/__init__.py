"""Helper package of the masked face recognition course.

The notebooks in ``notebooks/`` import from here; every function they use is
documented where it is defined. Image convention: RGB ``uint8`` arrays of shape
``(H, W, 3)`` in memory, ``float32`` in ``[0, 1]`` inside models (see
:mod:`course_lib.images`). Boxes: ``(x_min, y_min, x_max, y_max)`` in pixels,
``float32``, the ``"xyxy"`` format of keras-cv (see :mod:`course_lib.data.records`).
"""

__version__ = "0.1.0"
