"""Face verification: pair scores, thresholds fitted on held-out folds, ROC metrics.

Verification decides whether two faces show the same person by comparing the
cosine similarity of their embeddings with a threshold. The threshold is a
parameter fitted on data, so an honest accuracy fits it on some pairs and
applies it to others: :func:`kfold_accuracy` splits the pairs into 10 folds,
fits on 9 and scores the 10th, and the fitting step only ever receives the 9
training folds.

Terms (ISO/IEC 19795-1, as NIST uses them): a false match (false accept) is an
impostor pair scored above the threshold; a false non-match (false reject) is a
genuine pair scored below it. FMR/FAR and FNMR/FRR are their rates; TAR is
``1 - FNMR``; the equal error rate (EER) is where FMR equals FNMR.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from .data.records import FaceRecord, PairRecord

log = logging.getLogger(__name__)


class IdentityLeakError(ValueError):
    """Raised when an identity of the training data also appears in evaluation data."""


def check_identity_disjoint(train_identities: Sequence[str], eval_identities: Sequence[str]) -> None:
    """Raise :class:`IdentityLeakError` if any identity is in both sets.

    An evaluation on people seen during training measures memorisation, not
    verification of unseen people, so every evaluation in the course calls this first.
    """
    overlap = sorted(set(train_identities) & set(eval_identities))
    if overlap:
        shown = ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else "")
        raise IdentityLeakError(
            f"{len(overlap)} identities appear in both the training and the evaluation data ({shown}); "
            "train on LFW DevTrain and evaluate on DevTest pairs, whose identities are disjoint."
        )


# --- scores ---------------------------------------------------------------------


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Return the row-wise cosine similarity of two ``(N, D)`` embedding arrays, shape ``(N,)``, in ``[-1, 1]``."""
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"Expected two (N, D) arrays of the same shape, got {first.shape} and {second.shape}.")
    first = first / np.maximum(np.linalg.norm(first, axis=1, keepdims=True), 1e-12)
    second = second / np.maximum(np.linalg.norm(second, axis=1, keepdims=True), 1e-12)
    return np.clip(np.sum(first * second, axis=1), -1.0, 1.0)


def assign_folds(same: Sequence[bool], n_folds: int = 10) -> np.ndarray:
    """Split pairs into ``n_folds`` folds, with genuine and impostor pairs spread evenly.

    The i-th genuine pair (in input order) goes to fold ``i * n_folds // n_genuine``,
    and likewise for impostor pairs, so consecutive pairs stay together as in
    LFW's own 10-fold protocol, and the split needs no random numbers.

    Returns
    -------
    (N,) ndarray of int
    """
    same = np.asarray(same, dtype=bool)
    folds = np.empty(len(same), dtype=int)
    for value in (True, False):
        where = np.flatnonzero(same == value)
        if len(where) < n_folds:
            raise ValueError(
                f"Only {len(where)} {'genuine' if value else 'impostor'} pairs for {n_folds} folds; "
                "use more pairs or fewer folds."
            )
        folds[where] = np.arange(len(where)) * n_folds // len(where)
    return folds


# --- thresholds -----------------------------------------------------------------


def fit_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Return the threshold that maximises accuracy on these pairs.

    Candidates are the midpoints between consecutive sorted scores (plus one
    below and one above all of them); ties go to the smallest such threshold.
    A pair is predicted "same" when its score is ``>= threshold``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if len(scores) == 0:
        raise ValueError("Cannot fit a threshold on zero pairs.")
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    accuracies = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Return the fraction of pairs for which ``score >= threshold`` equals ``same``."""
    return float(np.mean((np.asarray(scores) >= threshold) == np.asarray(same, dtype=bool)))


@dataclasses.dataclass(frozen=True)
class KFoldResult:
    """Accuracy of a verification threshold fitted on other folds.

    Attributes
    ----------
    accuracy : float
        Mean of ``fold_accuracies``, in ``[0, 1]``.
    std : float
        Standard deviation of the fold accuracies.
    fold_accuracies, thresholds : (n_folds,) ndarray
        Per fold: the accuracy on the fold, and the threshold fitted on the other folds.
    """

    accuracy: float
    std: float
    fold_accuracies: np.ndarray
    thresholds: np.ndarray


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None, n_folds: int = 10) -> KFoldResult:
    """Compute verification accuracy with the threshold fitted on the other folds.

    For each fold ``f``, :func:`fit_threshold` receives only the pairs whose
    fold is not ``f``; the fitted threshold is then applied to fold ``f``. No
    pair is ever scored with a threshold that was fitted on it.

    Parameters
    ----------
    scores : (N,) array
        Similarity of each pair (higher means more alike).
    same : (N,) array of bool
    folds : (N,) array of int, optional
        Fold of each pair; by default :func:`assign_folds` with ``n_folds``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = assign_folds(same, n_folds) if folds is None else np.asarray(folds)
    if not (len(scores) == len(same) == len(folds)):
        raise ValueError(f"scores, same and folds differ in length: {len(scores)}, {len(same)}, {len(folds)}.")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("k-fold accuracy needs at least two folds; every pair is in the same fold.")
    accuracies, thresholds = [], []
    for fold in fold_ids:
        held_out = folds == fold
        threshold = fit_threshold(scores[~held_out], same[~held_out])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[held_out], same[held_out], threshold))
    accuracies = np.array(accuracies)
    return KFoldResult(float(accuracies.mean()), float(accuracies.std()), accuracies, np.array(thresholds))


# --- ROC metrics ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RocMetrics:
    """ROC curve and the operating points reported in face verification.

    Attributes
    ----------
    fmr, tar, thresholds : ndarray
        ROC curve from :func:`sklearn.metrics.roc_curve` (false match rate, true
        accept rate, decreasing thresholds).
    eer : float
        Equal error rate, where FMR equals FNMR (linear interpolation between ROC points).
    tar_at_far : dict of float to float
        TAR at each requested FAR: the best TAR among thresholds whose FMR does not exceed it.
    fnmr_at_fmr : dict of float to float
        ``1 - tar_at_far``, the NIST form of the same operating points.
    n_genuine, n_impostor : int
        Counts; an FMR below ``1 / n_impostor`` cannot be resolved.
    """

    fmr: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    eer: float
    tar_at_far: dict
    fnmr_at_fmr: dict
    n_genuine: int
    n_impostor: int


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """Return the equal error rate in ``[0, 1]``: the error where FMR and FNMR cross on the ROC curve."""
    fmr, tar, _ = roc_curve(np.asarray(same, dtype=bool), np.asarray(scores, dtype=np.float64))
    fnmr = 1.0 - tar
    difference = fnmr - fmr  # decreasing along the curve, from 1 to -1
    index = int(np.argmax(difference <= 0))
    if index == 0:
        return float(fmr[0])
    # Interpolate linearly between the last point with FNMR > FMR and the first with FNMR <= FMR.
    d0, d1 = difference[index - 1], difference[index]
    weight = d0 / (d0 - d1)
    return float(fmr[index - 1] + weight * (fmr[index] - fmr[index - 1]))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Return the highest true accept rate among thresholds with false accept rate ``<= far``."""
    fmr, tar, _ = roc_curve(np.asarray(same, dtype=bool), np.asarray(scores, dtype=np.float64))
    allowed = fmr <= far
    return float(tar[allowed].max()) if np.any(allowed) else 0.0


def roc_metrics(scores: np.ndarray, same: np.ndarray, fars: Sequence[float] = (1e-2, 1e-3)) -> RocMetrics:
    """Compute the ROC curve, EER, TAR at the given FARs and FNMR at the same FMRs."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("ROC metrics need both genuine (same=True) and impostor (same=False) pairs.")
    fmr, tar, thresholds = roc_curve(same, scores)
    n_impostor = int((~same).sum())
    for far in fars:
        if far * n_impostor < 1:
            log.debug("FAR %g is below 1/%d impostor pairs: TAR there counts thresholds with no false accept.", far, n_impostor)
    tars = {float(far): tar_at_far(scores, same, far) for far in fars}
    return RocMetrics(
        fmr=fmr,
        tar=tar,
        thresholds=thresholds,
        eer=equal_error_rate(scores, same),
        tar_at_far=tars,
        fnmr_at_fmr={far: 1.0 - value for far, value in tars.items()},
        n_genuine=int(same.sum()),
        n_impostor=n_impostor,
    )


def verification_report(scores: np.ndarray, same: np.ndarray, folds: np.ndarray | None = None) -> dict:
    """Return the headline numbers of one evaluation as a flat dict (fractions in ``[0, 1]``).

    Keys: ``accuracy``, ``accuracy_std`` (10-fold), ``eer``, ``tar@far=1e-2``,
    ``tar@far=1e-3``, ``fnmr@fmr=1e-2``.
    """
    kfold = kfold_accuracy(scores, same, folds)
    roc = roc_metrics(scores, same)
    return {
        "accuracy": kfold.accuracy,
        "accuracy_std": kfold.std,
        "eer": roc.eer,
        "tar@far=1e-2": roc.tar_at_far[1e-2],
        "tar@far=1e-3": roc.tar_at_far[1e-3],
        "fnmr@fmr=1e-2": roc.fnmr_at_fmr[1e-2],
    }


# --- evaluation pairs -----------------------------------------------------------


def build_rmfrd_pairs(records: Sequence[FaceRecord], n_pairs: int = 600, seed: int = 0) -> list[PairRecord]:
    """Build real masked-versus-unmasked verification pairs from RMFRD, deterministically.

    Every pair has a masked photo first and an unmasked photo second. Half the
    pairs are genuine (both of the same person), half impostor (different
    people). The same records and seed always give the same pairs.

    Parameters
    ----------
    records : sequence of FaceRecord
        From :func:`course_lib.data.load_rmfrd`.
    n_pairs : int
        Total number of pairs; must be even.
    seed : int

    Returns
    -------
    list of PairRecord
        Genuine pairs first; ``fold`` from :func:`assign_folds` (10 folds).
    """
    if n_pairs % 2 or n_pairs < 20:
        raise ValueError(f"n_pairs must be an even number of at least 20, got {n_pairs}.")
    rng = np.random.default_rng(seed)
    masked = {}
    unmasked = {}
    for record in records:
        target = masked if record.masked else unmasked
        target.setdefault(record.identity, []).append(record)
    people = sorted(set(masked) & set(unmasked))
    if len(people) < 2:
        raise ValueError(f"RMFRD pairs need at least two people with masked and unmasked photos, found {len(people)}.")
    half = n_pairs // 2
    genuine, impostor = [], []
    for index in range(half):
        person = people[index % len(people)]
        first = masked[person][rng.integers(len(masked[person]))]
        second = unmasked[person][rng.integers(len(unmasked[person]))]
        genuine.append((first, second, True))
    for index in range(half):
        person = people[index % len(people)]
        other = people[(people.index(person) + 1 + rng.integers(len(people) - 1)) % len(people)]
        first = masked[person][rng.integers(len(masked[person]))]
        second = unmasked[other][rng.integers(len(unmasked[other]))]
        impostor.append((first, second, False))
    triples = genuine + impostor
    folds = assign_folds([same for _, _, same in triples])
    return [PairRecord(first=a, second=b, same=same, fold=int(f)) for (a, b, same), f in zip(triples, folds)]


def pair_identities(pairs: Sequence[PairRecord]) -> set[str]:
    """Return every identity named in a list of pairs."""
    return {record.identity for pair in pairs for record in (pair.first, pair.second)}


# --- figures and the threshold explorer -----------------------------------------


def plot_roc_curves(curves: dict, title: str = "ROC curves", ax=None):
    """Plot ROC curves (TAR against FAR, log-scaled FAR) for several score sets.

    Parameters
    ----------
    curves : dict of str to (scores, same)
        One curve per label.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, (scores, same) in curves.items():
        fmr, tar, _ = roc_curve(np.asarray(same, dtype=bool), np.asarray(scores))
        floor = 1.0 / max(int((~np.asarray(same, dtype=bool)).sum()), 1)
        ax.plot(np.maximum(fmr, floor / 2), tar, label=f"{label} (EER {100 * equal_error_rate(scores, same):.1f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (FAR / FMR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.figure.tight_layout()
    return ax.figure


def verification_errors(scores: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Return the indices of false accepts and false rejects at ``threshold``.

    False accepts are impostor pairs with ``score >= threshold``, sorted from
    the highest score; false rejects are genuine pairs below it, sorted from
    the lowest score (the most confident mistakes first).
    """
    scores = np.asarray(scores)
    same = np.asarray(same, dtype=bool)
    accepts = np.flatnonzero(~same & (scores >= threshold))
    rejects = np.flatnonzero(same & (scores < threshold))
    return {
        "false_accepts": accepts[np.argsort(-scores[accepts])],
        "false_rejects": rejects[np.argsort(scores[rejects])],
    }


def show_verification_errors(first: np.ndarray, second: np.ndarray, scores: np.ndarray, same: np.ndarray, threshold: float, max_pairs: int = 4):
    """Show the worst false accepts and false rejects at a threshold as image pairs.

    Parameters
    ----------
    first, second : (P, H, W, 3) ndarray of uint8
        The two faces of each pair.
    scores, same : (P,) arrays
    threshold : float
    max_pairs : int
        Pairs shown per kind of error.
    """
    import matplotlib.pyplot as plt

    errors = verification_errors(scores, same, threshold)
    figure, axes = plt.subplots(2, 2 * max_pairs, figsize=(1.3 * 2 * max_pairs, 3.2), squeeze=False)
    for row, (kind, indices) in enumerate(errors.items()):
        for slot in range(max_pairs):
            left, right = axes[row, 2 * slot], axes[row, 2 * slot + 1]
            left.axis("off")
            right.axis("off")
            if slot >= len(indices):
                continue
            index = indices[slot]
            left.imshow(first[index])
            right.imshow(second[index])
            left.set_title(f"{scores[index]:.2f}", fontsize=8)
        axes[row, 0].text(
            -0.1, 0.5, f"{kind.replace('_', ' ')}\n({len(indices)})", transform=axes[row, 0].transAxes,
            ha="right", va="center", fontsize=8,
        )
    far = np.mean(scores[~np.asarray(same, dtype=bool)] >= threshold)
    frr = np.mean(scores[np.asarray(same, dtype=bool)] < threshold)
    figure.suptitle(f"threshold {threshold:.2f}: FAR {100 * far:.1f}%, FRR {100 * frr:.1f}% (pair scores above each pair)")
    figure.tight_layout()
    return figure


def threshold_explorer(first: np.ndarray, second: np.ndarray, scores: np.ndarray, same: np.ndarray, max_pairs: int = 4):
    """Return an ipywidgets slider that redraws :func:`show_verification_errors` as the threshold moves.

    The slider starts at the threshold that maximises accuracy on these pairs
    (an explorer, not an evaluation). Display the returned widget in a notebook.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    start = fit_threshold(scores, same)
    slider = widgets.FloatSlider(value=round(start, 2), min=-0.2, max=1.0, step=0.01, description="threshold", continuous_update=False)
    output = widgets.Output()

    def redraw(change=None):
        with output:
            output.clear_output(wait=True)
            figure = show_verification_errors(first, second, scores, same, slider.value, max_pairs)
            plt.show(figure)

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, output])


def eer_exercise(seed: int = 5):
    """Return ``(scores, same, exercise)`` for computing an equal error rate by hand.

    Ten genuine and ten impostor scores are drawn so that the EER is a round
    fraction; the exercise checks the answer against :func:`equal_error_rate`
    and recognises answers given in percent, or as the accuracy-optimal error.
    """
    from .exercises import Exercise, IncorrectAnswer, expect_number

    rng = np.random.default_rng(seed)
    genuine = np.round(rng.uniform(0.35, 0.95, 10), 2)
    impostor = np.round(rng.uniform(0.05, 0.55, 10), 2)
    scores = np.concatenate([genuine, impostor])
    same = np.array([True] * 10 + [False] * 10)
    expected = equal_error_rate(scores, same)
    best_error = 1.0 - max(np.mean((scores >= t) == same) for t in scores)

    def checker(answer):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise IncorrectAnswer(f"Expected a number, got {type(answer).__name__}.") from None
        if abs(value - 100 * expected) < 1e-6 and expected > 0:
            raise IncorrectAnswer("That looks like a percentage; give the EER as a fraction in [0, 1].")
        if abs(value - best_error) < 1e-6 and abs(best_error - expected) > 1e-6:
            raise IncorrectAnswer(
                "That is the lowest total error rate, not the EER. The EER is where the false match rate equals the false non-match rate."
            )
        if not 0.0 <= value <= 1.0:
            raise IncorrectAnswer(f"An error rate lies in [0, 1]; got {value}.")
        expect_number(value, expected, what="the EER", atol=1e-6)
        return f"EER = {expected:.2f}."

    exercise = Exercise(
        "Equal error rate",
        checker,
        hint=(
            "For each candidate threshold t, FMR = mean(impostor scores >= t) and FNMR = mean(genuine scores < t). "
            "Find the t where they are equal."
        ),
        solution="fmr, tar, _ = sklearn.metrics.roc_curve(same, scores); then find where fmr == 1 - tar (course_lib.verification.equal_error_rate).",
    )
    return scores, same, exercise
