"""Tests of cancelable templates: matching survives the projection, keys revoke and unlink."""

import numpy as np
import pytest

from course_lib.exercises import IncorrectAnswer
from course_lib.templates import (
    cosine_scores,
    error_rates,
    error_rates_exercise,
    key_to_seed,
    match_rate,
    protect,
    random_projection,
    revocation_exercise,
)

DIM = 64
PEOPLE = 30
SAMPLES = 4


def _clustered_embeddings(seed=0, spread=0.5):
    """Embeddings of PEOPLE identities, SAMPLES noisy copies each, plus their labels."""
    generator = np.random.default_rng(seed)
    centres = generator.standard_normal((PEOPLE, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = generator.standard_normal((PEOPLE, SAMPLES, DIM)) * spread / np.sqrt(DIM)
    embeddings = (centres[:, None, :] + noise).reshape(-1, DIM)
    labels = np.repeat(np.arange(PEOPLE), SAMPLES)
    return embeddings, labels


def _genuine_impostor_pairs(labels):
    index = np.arange(len(labels))
    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    return index[first], index[second], same


def test_projection_rows_orthonormal():
    matrix = random_projection("alice", DIM, 32)
    assert matrix.shape == (32, DIM)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(32), atol=1e-10)


def test_full_projection_keeps_scores():
    embeddings, labels = _clustered_embeddings()
    first, second, _ = _genuine_impostor_pairs(labels)
    protected = protect(embeddings, key="alice")
    before = cosine_scores(embeddings[first], embeddings[second])
    after = cosine_scores(protected[first], protected[second])
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_reduced_projection_keeps_ranking():
    embeddings, labels = _clustered_embeddings()
    first, second, same = _genuine_impostor_pairs(labels)
    protected = protect(embeddings, key=7, output_dim=48)
    scores = cosine_scores(protected[first], protected[second])
    assert scores[same].min() > scores[~same].max()


def test_reduced_projection_scores_close():
    embeddings, labels = _clustered_embeddings()
    first, second, _ = _genuine_impostor_pairs(labels)
    before = cosine_scores(embeddings[first], embeddings[second])
    protected = protect(embeddings, key=7, output_dim=48)
    after = cosine_scores(protected[first], protected[second])
    assert np.mean(np.abs(after - before)) < 0.1


def test_cross_key_scores_near_zero():
    embeddings, labels = _clustered_embeddings()
    old = protect(embeddings, key="alice-2026")
    new = protect(embeddings, key="alice-2027")
    same_image = cosine_scores(old, new)
    assert abs(float(np.mean(same_image))) < 0.05
    assert float(np.max(np.abs(same_image))) < 0.6


def test_cross_key_genuine_rejected():
    embeddings, labels = _clustered_embeddings()
    first, second, same = _genuine_impostor_pairs(labels)
    genuine_before = cosine_scores(embeddings[first][same], embeddings[second][same])
    threshold = 0.5
    assert match_rate(genuine_before, threshold) == 1.0
    old = protect(embeddings, key=1)
    new = protect(embeddings, key=2)
    cross = cosine_scores(old[first][same], new[second][same])
    assert match_rate(cross, threshold) < 0.02


def test_same_key_reproducible():
    embeddings, _ = _clustered_embeddings()
    np.testing.assert_array_equal(protect(embeddings, key="bob"), protect(embeddings, key="bob"))


def test_different_keys_differ():
    first = random_projection(1, DIM)
    second = random_projection(2, DIM)
    assert not np.allclose(first, second)
    assert np.abs(first - second).max() > 0.1


def test_string_keys_hash_differently():
    assert key_to_seed("alice-2026") != key_to_seed("alice-2027")
    assert key_to_seed("alice") == key_to_seed(b"alice")


def test_projection_read_only():
    matrix = random_projection(3, 8)
    with pytest.raises(ValueError):
        matrix[0, 0] = 1.0


def test_protect_single_vector_shape():
    vector = np.arange(1, 9, dtype=np.float64)
    template = protect(vector, key=3)
    assert template.shape == (8,)
    assert template.dtype == np.float32
    assert np.isclose(np.linalg.norm(template), 1.0, atol=1e-6)


def test_output_dim_too_large_rejected():
    with pytest.raises(ValueError, match="output_dim must be between 1 and input_dim=8, got 9"):
        random_projection(0, 8, 9)


def test_negative_key_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        key_to_seed(-1)


def test_float_key_rejected():
    with pytest.raises(TypeError, match="got float"):
        key_to_seed(1.5)


def test_nan_embeddings_rejected():
    with pytest.raises(ValueError, match="NaN or infinity"):
        protect(np.array([[np.nan, 1.0]]), key=0)


def test_cosine_shape_mismatch_rejected():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 3\)"):
        cosine_scores(np.ones((2, 3)), np.ones((3, 3)))


def test_match_rate_counts_threshold_inclusive():
    assert match_rate(np.array([0.2, 0.5, 0.7, 0.9]), 0.5) == 0.75


def test_match_rate_empty_rejected():
    with pytest.raises(ValueError, match="at least one comparison"):
        match_rate(np.array([]), 0.5)


# --- error rates and the exercises of notebook 07 ----------------------------------

GENUINE = np.array([0.9, 0.8, 0.7, 0.55, 0.4])
IMPOSTOR = np.array([0.6, 0.55, 0.3, 0.2, 0.1])


def test_error_rates_at_threshold():
    fmr, fnmr = error_rates(GENUINE, IMPOSTOR, 0.55)
    assert fmr == pytest.approx(0.4)
    assert fnmr == pytest.approx(0.2)


def test_error_exercise_accepts_right(capsys):
    error_rates_exercise(GENUINE, IMPOSTOR, 0.55).check((0.4, 0.2))
    assert "FMR = 0.40, FNMR = 0.20" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((0.2, 0.4), "swapped"),
        ((0.2, 0.2), "counts as a match"),
        ((0.4, 0.4), "counts as a match"),
        ((0.5, 0.2), "FMR (share of impostor scores >= threshold) is 0.5, expected 0.4"),
        (0.4, "should be a pair (fmr, fnmr)"),
    ],
)
def test_error_exercise_explains_mistake(answer, message):
    with pytest.raises(IncorrectAnswer, match=message.replace("(", r"\(").replace(")", r"\)")):
        error_rates_exercise(GENUINE, IMPOSTOR, 0.55).check(answer)


def test_revocation_accepts_new_key(capsys):
    embeddings, _ = _clustered_embeddings()
    leaked = protect(embeddings, key="old")
    revocation_exercise(embeddings).check(cosine_scores(leaked, protect(embeddings, key="new")))
    assert "no longer match" in capsys.readouterr().out


def test_revocation_same_key_explained():
    embeddings, _ = _clustered_embeddings()
    leaked = protect(embeddings, key="old")
    with pytest.raises(IncorrectAnswer, match="made with the old key"):
        revocation_exercise(embeddings).check(cosine_scores(leaked, protect(embeddings, key="old")))


def test_revocation_wrong_shape_explained():
    embeddings, _ = _clustered_embeddings()
    with pytest.raises(IncorrectAnswer, match=rf"shape \({len(embeddings)},\)"):
        revocation_exercise(embeddings).check(np.zeros(3))


def test_revocation_related_scores_explained():
    embeddings, _ = _clustered_embeddings()
    # Neighbouring rows are mostly the same person, so these scores are high.
    same_people = cosine_scores(embeddings, embeddings[np.roll(np.arange(len(embeddings)), 1)])
    with pytest.raises(IncorrectAnswer, match="mean absolute score is"):
        revocation_exercise(embeddings).check(same_people)
