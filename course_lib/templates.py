"""Cancelable biometric templates by a keyed random projection.

A face embedding stored in a database is a biometric template. Unlike a
password it cannot be changed when it leaks, because the face stays the same.
A cancelable template stores a keyed transform of the embedding instead:

* the user's key seeds a random orthogonal projection (optionally followed by
  sign flips and a permutation of the output coordinates), applied to every
  embedding of that user;
* two embeddings protected with the same key keep their cosine similarity
  (exactly when the output dimension equals the input dimension, approximately
  when it is smaller), so matching works as before;
* a leaked template is revoked by issuing a new key. Templates made with
  different keys are unrelated: their cosine similarity is close to 0, with a
  spread of about ``1 / sqrt(output_dim)``. So the old template no longer
  matches, and templates of one person in two databases cannot be linked.

A linear projection with ``output_dim == input_dim`` is invertible by whoever
holds both the key and the template. Choosing ``output_dim < input_dim`` makes
the map many-to-one, at the price of a small change in the scores; schemes such
as BioHashing also binarise the projection. This module demonstrates
revocability and unlinkability, not resistance to an attacker who has the key.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

Key = int | str | bytes


def key_to_seed(key: Key) -> int:
    """Turn a user key into a 64-bit seed.

    Integers are used as they are (they must be non-negative); strings and
    bytes are hashed with SHA-256, so ``"alice-2026"`` and ``"alice-2027"``
    give unrelated seeds.
    """
    if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
        raise TypeError(f"A template key must be an int, str or bytes, got {type(key).__name__}.")
    if isinstance(key, int):
        if key < 0:
            raise ValueError(f"An integer template key must be non-negative, got {key}.")
        return key
    data = key.encode("utf-8") if isinstance(key, str) else key
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


@functools.lru_cache(maxsize=32)
def _projection(seed: int, input_dim: int, output_dim: int, flip_signs: bool, permute: bool) -> np.ndarray:
    generator = np.random.default_rng(seed)
    gaussian = generator.standard_normal((input_dim, input_dim))
    # QR of a Gaussian matrix with the signs of R's diagonal moved into Q gives
    # an orthogonal matrix drawn uniformly (Haar measure).
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))
    matrix = q[:output_dim]
    if flip_signs:
        matrix = matrix * generator.choice([-1.0, 1.0], size=(output_dim, 1))
    if permute:
        matrix = matrix[generator.permutation(output_dim)]
    matrix.setflags(write=False)
    return matrix


def random_projection(
    key: Key, input_dim: int, output_dim: int | None = None, flip_signs: bool = True, permute: bool = True
) -> np.ndarray:
    """Return the keyed projection matrix with orthonormal rows.

    Parameters
    ----------
    key : int, str or bytes
        The user's secret; the same key always gives the same matrix.
    input_dim : int
        Dimension of the embeddings.
    output_dim : int, optional
        Dimension of the protected templates, at most ``input_dim``
        (default: ``input_dim``).
    flip_signs, permute : bool
        Also flip the sign of random output coordinates and permute them.
        Both keep the rows orthonormal.

    Returns
    -------
    (output_dim, input_dim) ndarray of float64
        Read-only matrix ``P`` with ``P @ P.T`` equal to the identity.
    """
    output_dim = input_dim if output_dim is None else int(output_dim)
    if input_dim < 1:
        raise ValueError(f"input_dim must be at least 1, got {input_dim}.")
    if not 1 <= output_dim <= input_dim:
        raise ValueError(f"output_dim must be between 1 and input_dim={input_dim}, got {output_dim}.")
    return _projection(key_to_seed(key), int(input_dim), output_dim, bool(flip_signs), bool(permute))


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """Scale each row to unit Euclidean norm; all-zero rows stay zero. Returns float32."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


def protect(
    embeddings: np.ndarray, key: Key, output_dim: int | None = None, flip_signs: bool = True, permute: bool = True
) -> np.ndarray:
    """Turn embeddings into cancelable templates with the projection of ``key``.

    Parameters
    ----------
    embeddings : (N, D) or (D,) array_like of float
        Face embeddings, for example the output of a recogniser. They are
        L2-normalised before and after the projection.
    key : int, str or bytes
        The user's key. Issue a new key to revoke the templates made with the old one.
    output_dim, flip_signs, permute
        See :func:`random_projection`.

    Returns
    -------
    (N, output_dim) or (output_dim,) ndarray of float32
        Unit-norm protected templates, compared with :func:`cosine_scores`.
    """
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"Expected embeddings of shape (N, D) or (D,), got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("The embeddings contain NaN or infinity; fix the recogniser's output before protecting it.")
    matrix = random_projection(key, array.shape[-1], output_dim, flip_signs=flip_signs, permute=permute)
    projected = l2_normalize(array) @ matrix.T
    return l2_normalize(projected)


def cosine_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows: ``scores[i] = cos(first[i], second[i])``.

    Parameters
    ----------
    first, second : (N, D) array_like of float
        Two sets of embeddings or templates, compared row by row.

    Returns
    -------
    (N,) ndarray of float32
        Values in ``[-1, 1]``; higher means more alike.
    """
    first = np.atleast_2d(np.asarray(first, dtype=np.float64))
    second = np.atleast_2d(np.asarray(second, dtype=np.float64))
    if first.shape != second.shape:
        raise ValueError(f"Both sets must have the same shape to be compared row by row, got {first.shape} and {second.shape}.")
    return np.sum(l2_normalize(first).astype(np.float64) * l2_normalize(second), axis=-1).astype(np.float32)


def match_rate(scores: np.ndarray, threshold: float) -> float:
    """Fraction of comparisons whose score is at least ``threshold`` (declared a match)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("No scores were given; a match rate needs at least one comparison.")
    return float(np.mean(scores >= threshold))


def error_rates(genuine_scores: np.ndarray, impostor_scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Return ``(FMR, FNMR)`` at ``threshold``; a score equal to the threshold is a match.

    The false match rate (FMR) is the fraction of impostor comparisons declared
    a match; the false non-match rate (FNMR) is the fraction of genuine
    comparisons declared a non-match. Raising the threshold lowers FMR and
    raises FNMR.
    """
    return match_rate(impostor_scores, threshold), 1.0 - match_rate(genuine_scores, threshold)


# --- figures ---------------------------------------------------------------------


def plot_score_histograms(panels: dict, threshold: float, bins: int = 30):
    """Histograms of genuine and impostor scores, one panel per setting, with the threshold.

    Parameters
    ----------
    panels : dict of str to (genuine_scores, impostor_scores)
        Panel title to the two score arrays, for example
        ``{"unprotected": (g, i), "same key": (g2, i2), "across keys": (g3, i3)}``.
    threshold : float
        Drawn as a vertical line in every panel.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6), sharex=True, squeeze=False)
    edges = np.linspace(-1, 1, bins + 1)
    for axis, (title, (genuine, impostor)) in zip(axes[0], panels.items()):
        axis.hist(np.asarray(impostor), bins=edges, alpha=0.6, color="#d62728", label="impostor")
        axis.hist(np.asarray(genuine), bins=edges, alpha=0.6, color="#2ca02c", label="genuine")
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
        axis.set_title(title)
        axis.set_xlabel("cosine score")
    axes[0, 0].set_ylabel("comparisons")
    axes[0, -1].legend(fontsize=7)
    figure.tight_layout()
    return figure


# --- exercises ---------------------------------------------------------------------


def error_rates_exercise(genuine_scores: np.ndarray, impostor_scores: np.ndarray, threshold: float):
    """Exercise: compute ``(fmr, fnmr)`` at ``threshold`` from genuine and impostor scores."""
    from .exercises import Exercise, IncorrectAnswer, expect_number

    genuine_scores = np.asarray(genuine_scores, dtype=np.float64)
    impostor_scores = np.asarray(impostor_scores, dtype=np.float64)
    fmr, fnmr = error_rates(genuine_scores, impostor_scores, threshold)
    strict_fmr = float(np.mean(impostor_scores > threshold))
    strict_fnmr = float(np.mean(genuine_scores <= threshold))

    def checker(answer):
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise IncorrectAnswer(f"the answer should be a pair (fmr, fnmr), got {type(answer).__name__} {answer!r}.")
        given_fmr, given_fnmr = (float(value) for value in answer)
        if np.isclose(given_fmr, fnmr) and np.isclose(given_fnmr, fmr) and not np.isclose(fmr, fnmr):
            raise IncorrectAnswer("the two rates are swapped: FMR comes from the impostor scores, FNMR from the genuine scores.")
        if (np.isclose(given_fmr, strict_fmr) and not np.isclose(strict_fmr, fmr)) or (
            np.isclose(given_fnmr, strict_fnmr) and not np.isclose(strict_fnmr, fnmr)
        ):
            raise IncorrectAnswer("a score equal to the threshold counts as a match (score >= threshold); check the comparison.")
        expect_number(given_fmr, fmr, what="FMR (share of impostor scores >= threshold)")
        expect_number(given_fnmr, fnmr, what="FNMR (share of genuine scores < threshold)")
        return f"FMR = {fmr:.2f}, FNMR = {fnmr:.2f} at threshold {threshold:g}."

    return Exercise(
        "FMR and FNMR at a threshold",
        checker,
        hint="FMR is the mean of (impostor >= threshold); FNMR is the mean of (genuine < threshold).",
        solution="""
            fmr = float(np.mean(impostor >= threshold))
            fnmr = float(np.mean(genuine < threshold))
            answer = (fmr, fnmr)
        """,
    )


def revocation_exercise(embeddings: np.ndarray):
    """Exercise: reissue templates with a new key and return the old-versus-new scores.

    The expected answer is the ``(N,)`` array of :func:`cosine_scores` between
    the leaked templates (``protect(embeddings, old_key)``) and templates of the
    same embeddings made with a new key. The check accepts any new key that
    makes the scores unrelated (mean absolute score below 0.2).
    """
    from .exercises import Exercise, IncorrectAnswer

    embeddings = np.asarray(embeddings, dtype=np.float64)
    count = len(embeddings)

    def checker(answer):
        scores = np.asarray(answer, dtype=np.float64)
        if scores.shape != (count,):
            raise IncorrectAnswer(f"the scores should have shape ({count},), one per template, got shape {scores.shape}.")
        if not np.all(np.isfinite(scores)) or np.any(np.abs(scores) > 1 + 1e-5):
            raise IncorrectAnswer("cosine scores lie in [-1, 1]; some of yours do not. Compare templates with cosine_scores.")
        mean_absolute = float(np.mean(np.abs(scores)))
        if np.allclose(scores, 1.0, atol=1e-4):
            raise IncorrectAnswer("every score is 1: the new templates were made with the old key. Choose a different key.")
        if mean_absolute >= 0.2:
            raise IncorrectAnswer(
                f"the mean absolute score is {mean_absolute:.2f}, expected close to 0 for unrelated keys. "
                "Compare the leaked templates with templates of the same embeddings under the new key."
            )
        return f"Mean absolute score across keys: {mean_absolute:.3f}; the leaked templates no longer match."

    return Exercise(
        "Revoke a leaked template",
        checker,
        hint="Call protect(embeddings, new_key) with a key other than the old one, then cosine_scores(leaked, reissued).",
        solution="""
            reissued = protect(embeddings, key="new secret")
            answer = cosine_scores(leaked, reissued)
        """,
    )
