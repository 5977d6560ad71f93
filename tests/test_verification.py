"""Verification metrics, held-out thresholds, identity disjointness and RMFRD pairs."""

import numpy as np
import pytest

from course_lib import verification
from course_lib.data.loaders import load_lfw_pairs, load_lfw_people, load_rmfrd
from course_lib.verification import (
    IdentityLeakError,
    assign_folds,
    build_rmfrd_pairs,
    check_identity_disjoint,
    cosine_similarity,
    equal_error_rate,
    fit_threshold,
    kfold_accuracy,
    pair_identities,
    roc_metrics,
    tar_at_far,
    verification_errors,
)


def test_cosine_similarity_values():
    first = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    second = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_similarity(first, second), [0.0, 1.0, -1.0], atol=1e-12)


def test_cosine_similarity_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        cosine_similarity(np.zeros((3, 2)), np.zeros((2, 2)))


def test_assign_folds_balanced():
    same = np.array([True] * 50 + [False] * 50)
    folds = assign_folds(same)
    for fold in range(10):
        assert (same[folds == fold]).sum() == 5
        assert (~same[folds == fold]).sum() == 5


def test_fit_threshold_separable():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = np.array([False, False, False, True, True, True])
    threshold = fit_threshold(scores, same)
    assert 0.3 < threshold < 0.7


def test_kfold_never_fits_on_evaluated_pairs(monkeypatch):
    same = np.array([True] * 100 + [False] * 100)
    scores = np.linspace(0.0, 1.0, 200)  # every score identifies its pair
    folds = assign_folds(same)
    seen = []
    real_fit = verification.fit_threshold

    def spy(fit_scores, fit_same):
        seen.append(np.array(fit_scores))
        return real_fit(fit_scores, fit_same)

    monkeypatch.setattr(verification, "fit_threshold", spy)
    kfold_accuracy(scores, same, folds)
    assert len(seen) == 10
    for fold, fitted in enumerate(seen):
        held_out = scores[folds == fold]
        assert not np.isin(held_out, fitted).any(), fold
        assert len(fitted) == 180


def test_kfold_threshold_from_other_folds():
    # Fold 0 alone would be separated perfectly at 0.5, but the other nine folds
    # put their threshold near 0.2, which misclassifies fold 0's impostors.
    same = np.array([True, False] * 10)
    folds = np.repeat(np.arange(10), 2)
    scores = np.where(same, 0.3, 0.1)
    scores[(folds == 0) & same] = 0.9
    scores[(folds == 0) & ~same] = 0.4
    result = kfold_accuracy(scores, same, folds)
    assert result.fold_accuracies[0] == 0.5
    assert result.thresholds[0] < 0.3
    np.testing.assert_allclose(result.fold_accuracies[1:], 1.0)


def test_kfold_single_fold_rejected():
    with pytest.raises(ValueError, match="two folds"):
        kfold_accuracy(np.zeros(4), np.array([True, False, True, False]), np.zeros(4, int))


def test_equal_error_rate_hand_case():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.1])
    same = np.array([True] * 4 + [False] * 4)
    # At threshold 0.6: one of four genuine pairs is rejected, one of four impostors accepted.
    assert equal_error_rate(scores, same) == pytest.approx(0.25)


def test_equal_error_rate_perfect_and_inverted():
    same = np.array([True] * 5 + [False] * 5)
    assert equal_error_rate(np.r_[np.ones(5), np.zeros(5)], same) == pytest.approx(0.0)
    assert equal_error_rate(np.r_[np.zeros(5), np.ones(5)], same) == pytest.approx(1.0)


def test_tar_at_far_hand_case():
    # Genuine 0.9, 0.8, 0.7, 0.25; impostors 0.85, 0.3, 0.2, 0.1. Accepting one
    # impostor (FAR 0.25) allows the threshold 0.7, which accepts three genuine pairs.
    scores = np.array([0.9, 0.8, 0.7, 0.25, 0.85, 0.3, 0.2, 0.1])
    same = np.array([True] * 4 + [False] * 4)
    assert tar_at_far(scores, same, far=0.0) == pytest.approx(0.25)
    assert tar_at_far(scores, same, far=0.25) == pytest.approx(0.75)


def test_roc_metrics_consistent():
    rng = np.random.default_rng(0)
    same = np.array([True] * 500 + [False] * 500)
    scores = np.where(same, rng.normal(0.6, 0.15, 1000), rng.normal(0.2, 0.15, 1000))
    metrics = roc_metrics(scores, same)
    assert 0.0 < metrics.eer < 0.2
    assert metrics.tar_at_far[1e-2] >= metrics.tar_at_far[1e-3]
    assert metrics.fnmr_at_fmr[1e-2] == pytest.approx(1.0 - metrics.tar_at_far[1e-2])
    assert (metrics.n_genuine, metrics.n_impostor) == (500, 500)


def test_verification_errors_indices():
    scores = np.array([0.9, 0.2, 0.7, 0.1])
    same = np.array([True, True, False, False])
    errors = verification_errors(scores, same, threshold=0.5)
    assert errors["false_accepts"].tolist() == [2]
    assert errors["false_rejects"].tolist() == [1]


def test_identity_leak_raises():
    with pytest.raises(IdentityLeakError, match="Ann_Smith"):
        check_identity_disjoint(["Ann_Smith", "Bo_Li"], ["Ann_Smith", "Cy_Young"])


def test_lfw_dev_splits_disjoint():
    train = {record.identity for record in load_lfw_people("DevTrain")}
    check_identity_disjoint(train, pair_identities(load_lfw_pairs("DevTest")))
    with pytest.raises(IdentityLeakError, match="3 identities"):
        check_identity_disjoint(train, sorted(train)[:3] + ["Not_In_Training"])


def test_rmfrd_pairs_deterministic():
    records = load_rmfrd()
    pairs = build_rmfrd_pairs(records, n_pairs=100, seed=3)
    again = build_rmfrd_pairs(records, n_pairs=100, seed=3)
    assert [(p.first.path, p.second.path) for p in pairs] == [(p.first.path, p.second.path) for p in again]
    assert sum(p.same for p in pairs) == 50
    assert all(p.first.masked and not p.second.masked for p in pairs)
    assert all((p.first.identity == p.second.identity) == p.same for p in pairs)
    assert sorted({p.fold for p in pairs}) == list(range(10))
