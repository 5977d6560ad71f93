"""YOLOv8 mask detection with keras-cv; the only module of the package that imports keras-cv.

keras-cv 0.9 is the last release of keras-cv (its maintainers moved to
keras-hub, which has no YOLO detector), so every use of it sits here behind
plain functions: if keras-cv stops installing, only this module changes.

The detector is ``keras_cv.models.YOLOV8Detector`` on a ``YOLOV8Backbone``
built from a :class:`YoloConfig`, trained from random weights (no pretrained
weights are downloaded). Boxes are ``"xyxy"`` pixels throughout. Images are
letterboxed: the longer side is resized to ``config.image_size`` and the
shorter one padded at the bottom or right, so predictions map back to the
original image by one division.

Two configurations are provided:

* :func:`quick_config`: a 1.2 M-parameter backbone at 256 px, a short training
  run that fits on a 2-core CPU and in Binder's memory. Its mAP is low.
* :func:`full_config`: the backbone widths and depths of keras-cv's
  ``yolo_v8_s_backbone`` preset at 640 px, with the training recipe in
  :func:`full_training_recipe`, meant for a GPU and the full FMD download.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .boxes import Detections, as_boxes, clip_boxes
from .data.records import MASK_CLASSES
from .images import read_image, resize

log = logging.getLogger(__name__)

PAD_CLASS = -1
"""Class id of a padding box: keras-cv's YOLOv8 loss ignores boxes whose coordinates are all -1."""

PAD_VALUE = 114
"""Grey level of the letterbox padding (the value YOLO implementations use)."""

CONFIG_FILE = "detector.json"
WEIGHTS_FILE = "detector.weights.h5"


@dataclasses.dataclass(frozen=True)
class YoloConfig:
    """Everything needed to rebuild a detector, stored next to its weights.

    Attributes
    ----------
    image_size : int
        Side of the square network input in pixels; a multiple of 32.
    stackwise_channels : tuple of int
        Channels of the four backbone stages.
    stackwise_depth : tuple of int
        C2f blocks in each backbone stage.
    fpn_depth : int
        C2f blocks in each path-aggregation (FPN) level.
    class_names : tuple of str
    max_boxes : int
        Ground-truth boxes per image after padding; extra boxes are dropped.
    confidence_threshold : float
        Detections scoring below this are discarded at prediction time.
    iou_threshold : float
        IoU above which the prediction decoder suppresses a lower-scoring box
        (class-agnostic: one face gets one class).
    max_detections : int
        Detections kept per image.
    """

    image_size: int = 256
    stackwise_channels: tuple[int, ...] = (32, 64, 128, 256)
    stackwise_depth: tuple[int, ...] = (1, 1, 1, 1)
    fpn_depth: int = 1
    class_names: tuple[str, ...] = MASK_CLASSES
    max_boxes: int = 128
    confidence_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100

    def __post_init__(self):
        if self.image_size % 32:
            raise ValueError(f"image_size is {self.image_size}; use a multiple of 32 (the coarsest YOLOv8 stride), such as 256 or 640.")
        if len(self.stackwise_channels) != 4 or len(self.stackwise_depth) != 4:
            raise ValueError("stackwise_channels and stackwise_depth need four values each, one per backbone stage.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "YoloConfig":
        values = json.loads(text)
        for key in ("stackwise_channels", "stackwise_depth", "class_names"):
            values[key] = tuple(values[key])
        return cls(**values)


def quick_config() -> YoloConfig:
    """Return the CPU configuration: 1.2 M backbone parameters (3.3 M for the detector) at 256 px."""
    return YoloConfig()


def full_config() -> YoloConfig:
    """Return the GPU configuration: the ``yolo_v8_s_backbone`` preset's widths and depths at 640 px.

    The widths ``(64, 128, 256, 512)`` and depths ``(1, 2, 2, 1)`` are those of
    keras-cv 0.9's ``yolo_v8_s_backbone`` preset (5.1 M backbone parameters,
    12.8 M for the whole detector with three classes), written out here so
    that building the model needs no download.
    """
    return YoloConfig(image_size=640, stackwise_channels=(64, 128, 256, 512), stackwise_depth=(1, 2, 2, 1), fpn_depth=1)


def full_training_recipe() -> dict:
    """Return the settings for training on the full FMD download (853 images) on a GPU.

    Use them as ``train_detector(model, train, config=full_config(), **full_training_recipe())``
    with an 80/20 split from :func:`course_lib.metrics_detection.split_records`.
    The settings follow the usual YOLOv8 schedule, scaled to a small data set.
    Inputs are 640 px, because FMD faces are small (a median side of about
    20 px) and a smaller input loses them. Training runs 150 epochs at batch
    16 with AdamW: the learning rate warms up linearly over 3 epochs to 1e-3
    and then decays by a cosine to 1e-5, with weight decay 5e-4 and gradients
    clipped at a global norm of 10. Augmentation is a horizontal flip plus a
    jittered resize with scale 0.5 to 1.5.

    On two CPU cores the 640-pixel configuration trains at about 1.5 images
    per second (docs/benchmarks.md), so 150 epochs over the 682 training
    images of an 80/20 split would take about 19 hours there.

    NOTE: this recipe has not been run on a GPU or on the full download.
    Published YOLOv5/YOLOv8 results on FMD are about 0.85-0.89 mAP@0.5, with
    pretrained weights. From random weights, expect to need the full 150
    epochs to approach that.

    Returns
    -------
    dict
        Keyword arguments of :func:`train_detector`.
    """
    return {
        "epochs": 150,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "final_learning_rate": 1e-5,
        "warmup_epochs": 3,
        "weight_decay": 5e-4,
        "scale_range": (0.5, 1.5),
    }


def build_detector(config: YoloConfig | None = None):
    """Build and compile an untrained ``YOLOV8Detector``.

    Parameters
    ----------
    config : YoloConfig, optional
        Defaults to :func:`quick_config`.

    Returns
    -------
    keras_cv.models.YOLOV8Detector
        Takes float32 images in ``[0, 1]`` of shape ``(B, S, S, 3)``, with
        ``S = config.image_size``. The config is attached as ``model.course_config``.
    """
    import keras
    import keras_cv

    config = config or quick_config()
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=list(config.stackwise_channels),
        stackwise_depth=list(config.stackwise_depth),
        include_rescaling=False,
        input_shape=(config.image_size, config.image_size, 3),
    )
    decoder = keras_cv.layers.NonMaxSuppression(
        bounding_box_format="xyxy",
        from_logits=False,
        confidence_threshold=config.confidence_threshold,
        iou_threshold=config.iou_threshold,
        max_detections=config.max_detections,
    )
    model = keras_cv.models.YOLOV8Detector(
        backbone=backbone,
        num_classes=len(config.class_names),
        bounding_box_format="xyxy",
        fpn_depth=config.fpn_depth,
        prediction_decoder=decoder,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=10.0),
        classification_loss="binary_crossentropy",
        box_loss="ciou",
    )
    model.course_config = config
    return model


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize an image so its longer side is ``size`` and pad it to a square.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
    size : int

    Returns
    -------
    canvas : (size, size, 3) ndarray of uint8
        The resized image at the top left, padding of grey :data:`PAD_VALUE`.
    scale : float
        ``size / max(H, W)``: multiply original coordinates by it to get
        canvas coordinates.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_height = max(1, min(size, round(height * scale)))
    new_width = max(1, min(size, round(width * scale)))
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_height, :new_width] = resize(image, (new_height, new_width))
    return canvas, scale


def prepare_examples(records: Sequence, image_size: int) -> dict:
    """Read and letterbox detection records into arrays for training.

    Parameters
    ----------
    records : sequence of DetectionRecord
    image_size : int

    Returns
    -------
    dict
        ``"images"``: ``(N, S, S, 3)`` uint8; ``"boxes"``: list of ``(n_i, 4)``
        float32 boxes in canvas pixels; ``"classes"``: list of ``(n_i,)`` int32.
    """
    from tqdm.auto import tqdm

    images = np.zeros((len(records), image_size, image_size, 3), dtype=np.uint8)
    boxes, classes = [], []
    for index, record in enumerate(tqdm(records, desc="Letterboxing images", unit="img", leave=False)):
        images[index], scale = letterbox(read_image(record.image_path), image_size)
        boxes.append(as_boxes(record.boxes) * np.float32(scale))
        classes.append(np.asarray(record.labels, dtype=np.int32))
    return {"images": images, "boxes": boxes, "classes": classes}


def pad_boxes(boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray], max_boxes: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-image box lists into dense arrays padded with -1, the form keras-cv's YOLOv8 loss expects.

    Parameters
    ----------
    boxes : sequence of (n_i, 4) arrays
    classes : sequence of (n_i,) arrays
    max_boxes : int
        Rows per image; images with more boxes keep their first ``max_boxes``.

    Returns
    -------
    boxes : (N, max_boxes, 4) ndarray of float32
        Padding rows are ``[-1, -1, -1, -1]``.
    classes : (N, max_boxes) ndarray of float32
        Padding entries are :data:`PAD_CLASS`.
    """
    dense_boxes = np.full((len(boxes), max_boxes, 4), -1.0, dtype=np.float32)
    dense_classes = np.full((len(boxes), max_boxes), PAD_CLASS, dtype=np.float32)
    for index, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
        count = min(len(image_boxes), max_boxes)
        if len(image_boxes) > max_boxes:
            log.warning("An image has %d boxes; only the first %d are used for training.", len(image_boxes), max_boxes)
        dense_boxes[index, :count] = as_boxes(image_boxes)[:count]
        dense_classes[index, :count] = np.asarray(image_classes)[:count]
    return dense_boxes, dense_classes


def make_dataset(
    examples: dict,
    config: YoloConfig,
    batch_size: int = 4,
    augment: bool = True,
    scale_range: tuple[float, float] = (0.75, 1.25),
    shuffle: bool = True,
    seed: int = 0,
):
    """Build a ``tf.data`` pipeline of ``(images, {"boxes", "classes"})`` batches.

    Boxes travel as ragged tensors through the box-aware augmentation
    (``keras_cv.layers.RandomFlip`` and ``JitteredResize``, which move the
    boxes with the pixels and drop boxes that leave the image) and are then
    made dense with -1 padding. Images leave the pipeline as float32 in ``[0, 1]``.

    Parameters
    ----------
    examples : dict
        Output of :func:`prepare_examples`.
    config : YoloConfig
    batch_size : int
    augment : bool
    scale_range : (float, float)
        Zoom range of the jittered resize.
    shuffle : bool
    seed : int
    """
    import keras_cv
    import tensorflow as tf

    size = config.image_size
    ragged_boxes = tf.ragged.constant([b.tolist() for b in examples["boxes"]], ragged_rank=1, inner_shape=(4,), dtype=tf.float32)
    ragged_classes = tf.ragged.constant([c.astype(np.float32).tolist() for c in examples["classes"]], dtype=tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"images": examples["images"], "bounding_boxes": {"boxes": ragged_boxes, "classes": ragged_classes}}
    )
    if shuffle:
        dataset = dataset.shuffle(len(examples["images"]), seed=seed, reshuffle_each_iteration=True)

    def to_float(inputs):
        return {"images": tf.cast(inputs["images"], tf.float32), "bounding_boxes": inputs["bounding_boxes"]}

    dataset = dataset.map(to_float).ragged_batch(batch_size, drop_remainder=False)
    if augment:
        augmenter = keras_cv.layers.Augmenter(
            [
                keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format="xyxy", seed=seed),
                keras_cv.layers.JitteredResize(
                    target_size=(size, size),
                    scale_factor=scale_range,
                    bounding_box_format="xyxy",
                    seed=seed,
                ),
            ]
        )
        dataset = dataset.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE)

    def to_dense(inputs):
        boxes = keras_cv.bounding_box.to_dense(inputs["bounding_boxes"], max_boxes=config.max_boxes)
        return inputs["images"] / 255.0, {"boxes": boxes["boxes"], "classes": boxes["classes"]}

    return dataset.map(to_dense, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def train_detector(
    model,
    records: Sequence,
    config: YoloConfig | None = None,
    epochs: int = 5,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    final_learning_rate: float = 1e-5,
    warmup_epochs: int = 1,
    weight_decay: float = 0.0,
    scale_range: tuple[float, float] = (0.75, 1.25),
    augment: bool = True,
    max_seconds: float | None = None,
    seed: int = 0,
    callbacks: Sequence | None = None,
    verbose: int = 0,
):
    """Train a detector on FMD records with augmentation and a warm-up plus cosine learning-rate schedule.

    Parameters
    ----------
    model : keras_cv.models.YOLOV8Detector
        From :func:`build_detector`; it is recompiled with the schedule.
    records : sequence of DetectionRecord
    config : YoloConfig, optional
        Defaults to ``model.course_config``.
    epochs, batch_size : int
    learning_rate : float
        Peak learning rate, reached at the end of the warm-up.
    final_learning_rate : float
        Learning rate at the end of the cosine decay.
    warmup_epochs : int
        Epochs of linear warm-up from 0 to ``learning_rate``.
    weight_decay : float
        AdamW weight decay; 0 uses plain Adam.
    scale_range : (float, float)
        Zoom range of the jittered-resize augmentation.
    augment : bool
        Apply the flip and jittered-resize augmentation.
    max_seconds : float, optional
        Stop after the epoch during which this much wall-clock time has passed.
    seed : int
    callbacks : sequence of keras.callbacks.Callback, optional
        Extra callbacks for ``fit`` (timers, logging).
    verbose : int
        Keras ``fit`` verbosity.

    Returns
    -------
    dict of str to list of float
        Keras' per-epoch metrics, ``"loss"``, ``"box_loss"`` and
        ``"class_loss"``. The ``History`` object is not returned because it
        keeps a reference to the model and its training graph.
    """
    import keras

    config = config or model.course_config
    examples = prepare_examples(records, config.image_size)
    dataset = make_dataset(examples, config, batch_size=batch_size, augment=augment, scale_range=scale_range, seed=seed)
    steps_per_epoch = int(np.ceil(len(records) / batch_size))
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = min(total_steps - 1, warmup_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=final_learning_rate / learning_rate,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    if weight_decay:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, global_clipnorm=10.0)
    else:
        optimizer = keras.optimizers.Adam(schedule, global_clipnorm=10.0)
    model.compile(optimizer=optimizer, classification_loss="binary_crossentropy", box_loss="ciou")
    callbacks = list(callbacks or []) + ([_time_limit_callback(max_seconds)] if max_seconds else [])
    log.info("Training YOLOv8 on %d images for up to %d epochs at %d px.", len(records), epochs, config.image_size)
    # The tf.data pipeline above already shuffles; Keras ignores (and warns about) shuffle=True for datasets.
    history = model.fit(dataset, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    return {name: [float(v) for v in values] for name, values in history.history.items()}


def _time_limit_callback(seconds: float):
    import keras

    class TimeLimit(keras.callbacks.Callback):
        """Stop training at the end of the epoch during which ``seconds`` have passed."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.start > seconds:
                log.info("Stopping after epoch %d: the %.0f s time limit has passed.", epoch + 1, seconds)
                self.model.stop_training = True

    return TimeLimit()


def predict_detector(model, images: Sequence[np.ndarray], config: YoloConfig | None = None, batch_size: int = 8) -> list[Detections]:
    """Detect masked and unmasked faces in images of any size.

    Parameters
    ----------
    model : keras_cv.models.YOLOV8Detector
    images : sequence of (H, W, 3) uint8 arrays
        RGB images; sizes may differ.
    config : YoloConfig, optional
        Defaults to ``model.course_config``.
    batch_size : int

    Returns
    -------
    list of Detections
        One per image, boxes in pixels of that image, scores at least
        ``config.confidence_threshold``; ``boxes.shape == (0, 4)`` when
        nothing is found.
    """
    config = config or model.course_config
    predict = _predict_function(model)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        canvases, scales = zip(*(letterbox(image, config.image_size) for image in chunk))
        batch = np.stack(canvases).astype(np.float32) / 255.0
        decoded = {key: value.numpy() for key, value in predict(batch).items()}
        for index, (image, scale) in enumerate(zip(chunk, scales)):
            count = int(decoded["num_detections"][index])
            boxes = clip_boxes(decoded["boxes"][index, :count] / scale, image.shape)
            classes = decoded["classes"][index, :count]
            scores = decoded["confidence"][index, :count]
            valid = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            results.append(Detections(boxes[valid], classes[valid], scores[valid]))
    return results


def _predict_function(model):
    """Return a traced function from float32 images to keras-cv's decoded detections (cached on the model)."""
    import tensorflow as tf

    function = getattr(model, "_course_predict", None)
    if function is None:

        @tf.function(reduce_retracing=True)
        def function(images):
            raw = model(images, training=False)
            return model.decode_predictions(raw, images)

        model._course_predict = function
    return function


def save_detector(model, path: os.PathLike | str) -> Path:
    """Save a detector as a folder with its weights and the JSON config that rebuilds it.

    The folder contains ``detector.json`` (:class:`YoloConfig`) and
    ``detector.weights.h5`` (Keras weights). :func:`load_detector` builds the
    same architecture from the config and loads the weights, which avoids
    depending on keras-cv's full-model serialisation.

    Parameters
    ----------
    model : keras_cv.models.YOLOV8Detector
        Built by :func:`build_detector`.
    path : path
        Folder to write; created if missing, files in it are replaced.

    Returns
    -------
    Path
        The folder.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text(model.course_config.to_json())
    model.save_weights(path / WEIGHTS_FILE)
    return path


def load_detector(path: os.PathLike | str):
    """Load a detector saved by :func:`save_detector`.

    Raises
    ------
    FileNotFoundError
        If the folder lacks ``detector.json`` or ``detector.weights.h5``.
    """
    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{str(path / name)!r} does not exist; save the detector with save_detector(model, {str(path)!r}) first.")
    config = YoloConfig.from_json((path / CONFIG_FILE).read_text())
    model = build_detector(config)
    with warnings.catch_warnings():
        # The weights file also lists optimizer variables, which a freshly compiled model does not have yet.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path / WEIGHTS_FILE)
    return model


def count_parameters(model) -> dict[str, int]:
    """Return the parameter counts of the whole detector and of its backbone."""
    return {"detector": int(model.count_params()), "backbone": int(model.backbone.count_params())}
