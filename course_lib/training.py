"""One training helper for the course's image classifiers.

:func:`train_classifier` builds a ``tf.data`` pipeline (cache, seeded shuffle,
batch, on-the-fly augmentation, prefetch), compiles the model with Adam and
sparse categorical cross-entropy, trains it with early stopping that restores
the best weights, and reports the time per epoch.

Mixed precision is a property of the layers, fixed when a model is built, so
call :func:`configure_device` *before* building a model: it switches the Keras
policy to ``mixed_float16`` on a GPU and keeps ``float32`` on a CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np

from .config import DeviceReport, device_report, seed_everything

log = logging.getLogger(__name__)


def configure_device(seed: int = 0) -> DeviceReport:
    """Seed everything and set the Keras precision policy for the device (mixed float16 on a GPU only)."""
    seed_everything(seed)
    report = device_report(enable_mixed_precision=True)
    log.info("Training device: %s", str(report).replace("\n", "; "))
    return report


def make_augmentation(
    seed: int = 0, rotation: float = 0.05, zoom: float = 0.1, shift: float = 0.08, brightness: float = 0.1, contrast: float = 0.1
) -> keras.Sequential:
    """Return the on-the-fly augmentation used in training, for float32 images in ``[0, 1]``.

    Horizontal flips, rotations up to ``rotation`` of a full turn (0.05 is
    18 degrees), zoom by up to ``zoom`` and shifts by up to ``shift``
    (fractions of the side), brightness shifts up to ``brightness`` and
    contrast changes up to ``contrast``; values stay in ``[0, 1]``.
    """
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 5),
            keras.layers.RandomBrightness(brightness, value_range=(0.0, 1.0), seed=seed + 3),
            keras.layers.RandomContrast(contrast, value_range=(0.0, 1.0), seed=seed + 4),
        ],
        name="augmentation",
    )


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0):
    """Build a batched ``tf.data.Dataset`` of ``(float32 images in [0, 1], int labels)``.

    Parameters
    ----------
    images : (N, H, W, 3) ndarray of uint8 (or float32 in [0, 1])
    labels : (N,) ndarray of int
    batch_size : int
    shuffle : bool
        Shuffle with ``seed`` (a new order every epoch, the same sequence of
        orders on every run).
    augment : bool
        Apply :func:`make_augmentation` to each batch.

    Notes
    -----
    The uint8 images are cached before the conversion to float32, so the
    cache costs a quarter of the memory of float32 images.
    """
    import tensorflow as tf

    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int32)
    if len(images) != len(labels):
        raise ValueError(f"Got {len(images)} images but {len(labels)} labels; expected one label per image.")
    if len(images) == 0:
        raise ValueError("Got no images: the dataset is empty.")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
    if shuffle:
        dataset = dataset.shuffle(min(len(images), 4096), seed=seed, reshuffle_each_iteration=True)
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    dataset = dataset.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) * scale, y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        augmentation = make_augmentation(seed)
        dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


class EpochTimer(keras.callbacks.Callback):
    """Callback that records the wall-clock seconds of each epoch in ``seconds`` and stops once ``max_seconds`` are spent."""

    def __init__(self, max_seconds: float | None = None):
        super().__init__()
        self.max_seconds = max_seconds
        self.seconds: list[float] = []
        self._training_start = 0.0
        self._epoch_start = 0.0
        self.stopped_by_budget = False

    def on_train_begin(self, logs=None):
        self._training_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.seconds.append(now - self._epoch_start)
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in (logs or {}).items() if name != "learning_rate")
        log.debug("Epoch %d done in %.1f s: %s", epoch + 1, self.seconds[-1], metrics)
        if self.max_seconds is not None and now - self._training_start >= self.max_seconds:
            self.stopped_by_budget = True
            self.model.stop_training = True


@dataclasses.dataclass
class TrainingResult:
    """What :func:`train_classifier` returns.

    Attributes
    ----------
    history : dict of str to list of float
        Keras' per-epoch metrics (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
    seconds_per_epoch : list of float
        Wall-clock seconds of each epoch, including the first (which also traces the graph).
    epochs_run : int
    best_epoch : int
        1-based epoch whose weights the model has at the end (the best by
        validation loss when there is validation data, else the last).
    images_per_second : float
        Training images processed per second, over the epochs after the first
        (or over the first when only one ran).
    stopped_by_budget : bool
        True when ``max_seconds`` ended training.
    """

    history: dict
    seconds_per_epoch: list
    epochs_run: int
    best_epoch: int
    images_per_second: float
    stopped_by_budget: bool = False

    @property
    def mean_seconds_per_epoch(self) -> float:
        return float(np.mean(self.seconds_per_epoch))


def balanced_class_weights(labels: np.ndarray, num_classes: int, max_weight: float = 10.0) -> dict[int, float]:
    """Return ``{class id: weight}`` inversely proportional to class frequency (scikit-learn's "balanced").

    Weights are capped at ``max_weight``: a class with a handful of examples
    among thousands would otherwise get a weight above 100, and single
    batches containing it then dominate (and destabilise) training. Classes
    absent from ``labels`` get weight 1.
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {c: 1.0 for c in range(num_classes)}
    result.update({int(c): float(min(w, max_weight)) for c, w in zip(present, weights)})
    return result


def train_classifier(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    augment: bool = True,
    seed: int = 0,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    patience: int = 5,
    weight_decay: float = 0.0,
    class_weight: dict[int, float] | str | None = None,
    max_seconds: float | None = None,
    label_smoothing: float = 0.0,
    verbose: int = 0,
) -> TrainingResult:
    """Train a softmax classifier on in-memory images.

    The model is compiled here with Adam (AdamW when ``weight_decay > 0``) and
    sparse categorical cross-entropy, then fitted on a shuffled, batched and
    (optionally) augmented ``tf.data`` pipeline.

    Parameters
    ----------
    model : keras.Model
        Input float32 images in ``[0, 1]``; output ``(batch, num_classes)``
        softmax. Any earlier compilation is replaced.
    train : (images, labels)
        ``(N, H, W, 3)`` uint8 (or float32 in ``[0, 1]``) images and ``(N,)`` int class ids.
    validation : (images, labels), optional
        Used for early stopping on ``val_loss``; without it, all epochs run.
    epochs : int
        Maximum number of epochs.
    batch_size : int
    augment : bool
        Apply :func:`make_augmentation` to training batches.
    seed : int
        Seeds Python, NumPy, TensorFlow, the shuffle order and the augmentation.
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
    patience : int
        Epochs without improvement of ``val_loss`` before stopping; the best
        weights are restored.
    weight_decay : float
        Decoupled weight decay; above 0 the optimizer is AdamW instead of Adam.
    class_weight : dict, "balanced" or None
        Loss weight per class id; ``"balanced"`` uses :func:`balanced_class_weights`
        (inverse frequency, capped at 10).
    max_seconds : float, optional
        Stop after the epoch during which this many seconds have passed.
    label_smoothing : float
        In ``[0, 1)``. Above 0, the training target of each image gives
        ``label_smoothing / num_classes`` to every class and the rest to the
        true one (cross-entropy against one-hot labels), which keeps the
        network from becoming over-confident on the training images.
    verbose : int
        Keras' ``fit`` verbosity.

    Returns
    -------
    TrainingResult
    """
    seed_everything(seed)
    images, labels = train
    num_classes = int(model.output_shape[-1])
    if np.max(labels) >= num_classes or np.min(labels) < 0:
        raise ValueError(f"Labels must be class ids in [0, {num_classes - 1}] for a model with {num_classes} outputs; got {np.min(labels)} to {np.max(labels)}.")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict, 'balanced' or None, got {class_weight!r}.")
        class_weight = balanced_class_weights(labels, num_classes)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")

    train_dataset = make_dataset(images, labels, batch_size, shuffle=True, augment=augment, seed=seed)
    validation_dataset = None
    if validation is not None:
        validation_dataset = make_dataset(validation[0], validation[1], batch_size)
    if label_smoothing > 0:
        import tensorflow as tf

        def one_hot(x, y):
            return x, tf.one_hot(y, num_classes)

        train_dataset = train_dataset.map(one_hot)
        validation_dataset = validation_dataset.map(one_hot) if validation_dataset is not None else None
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    callbacks: list[keras.callbacks.Callback] = []
    if validation is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True))
    timer = EpochTimer(max_seconds)
    callbacks.append(timer)

    if weight_decay > 0:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])
    log.info("Training %s on %d images for up to %d epochs (batch %d, augmentation %s).", model.name, len(labels), epochs, batch_size, "on" if augment else "off")
    fit = model.fit(
        train_dataset,
        validation_data=validation_dataset,
        epochs=epochs,
        callbacks=callbacks,
        class_weight=class_weight,
        # The pipeline already shuffles (seeded); fit's own shuffle does not apply to a tf.data.Dataset.
        shuffle=False,
        verbose=verbose,
    )
    history = {name: [float(v) for v in values] for name, values in fit.history.items()}
    epochs_run = len(timer.seconds)
    if validation is not None and "val_loss" in history:
        best_epoch = int(np.argmin(history["val_loss"])) + 1
    else:
        best_epoch = epochs_run
    timed = timer.seconds[1:] if epochs_run > 1 else timer.seconds
    images_per_second = len(labels) * len(timed) / max(sum(timed), 1e-9)
    log.info("Trained %d epochs in %.1f s; best epoch %d.", epochs_run, sum(timer.seconds), best_epoch)
    return TrainingResult(
        history=history,
        seconds_per_epoch=timer.seconds,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        images_per_second=float(images_per_second),
        stopped_by_budget=timer.stopped_by_budget,
    )
