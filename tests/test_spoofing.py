"""Tests of the simulated print attack and the continuous-authentication simulation."""

import numpy as np
import pytest

from course_lib.spoofing import REPLAY_STEPS, ReplaySettings, high_frequency_ratio, simulate_print_attack, simulate_takeover


def _face(seed=0):
    generator = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:112, 0:112]
    base = 128 + 60 * np.sin(rows / 9.0) * np.cos(cols / 7.0)
    image = np.stack([base, base * 0.9, base * 0.8], axis=-1) + generator.normal(0, 5, (112, 112, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_attack_keeps_shape_and_dtype():
    replay = simulate_print_attack(_face())
    assert replay.shape == (112, 112, 3)
    assert replay.dtype == np.uint8


def test_attack_changes_image():
    face = _face()
    replay = simulate_print_attack(face)
    assert np.mean(np.abs(replay.astype(float) - face)) > 5


def test_attack_same_seed_reproducible():
    face = _face()
    np.testing.assert_array_equal(simulate_print_attack(face, seed=3), simulate_print_attack(face, seed=3))


def test_attack_seeds_differ():
    face = _face()
    assert not np.array_equal(simulate_print_attack(face, seed=1), simulate_print_attack(face, seed=2))


def test_attack_returns_named_steps():
    face = _face()
    steps = simulate_print_attack(face, return_steps=True)
    assert len(steps) == len(REPLAY_STEPS)
    np.testing.assert_array_equal(steps[0], face)
    assert all(step.shape == face.shape and step.dtype == np.uint8 for step in steps)


def test_attack_rejects_float_image():
    with pytest.raises(ValueError, match="RGB uint8"):
        simulate_print_attack(_face().astype(np.float32))


def test_attack_rejects_bad_quality():
    with pytest.raises(ValueError, match="jpeg_quality must be between 1 and 100, got 0"):
        simulate_print_attack(_face(), settings=ReplaySettings(jpeg_quality=0))


def test_blur_lowers_high_frequency_ratio():
    face = _face()
    settings = ReplaySettings(max_tilt=0.0, blur_sigma=2.0, moire_amplitude=0.0, noise_sigma=0.0, jpeg_quality=95)
    blurred = simulate_print_attack(face, settings=settings)
    assert high_frequency_ratio(blurred) < high_frequency_ratio(face)


def test_ratio_of_flat_image_is_zero():
    assert high_frequency_ratio(np.full((32, 32, 3), 90, np.uint8)) == 0.0


def test_takeover_separable_scores():
    genuine = np.full(50, 0.8)
    impostor = np.full(50, 0.1)
    result = simulate_takeover(genuine, impostor, threshold=0.5, check_every=10, frames=200, takeover_frame=100, sessions=20)
    assert result.false_lock_rate == 0.0
    assert result.missed_rate == 0.0
    assert result.detection_delay == 10.0
    assert result.checks_per_session == 11.0


def test_takeover_frequent_checks_detect_sooner():
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.1, 200)
    impostor = rng.normal(0.1, 0.1, 200)
    often = simulate_takeover(genuine, impostor, 0.35, check_every=1, sessions=100)
    rarely = simulate_takeover(genuine, impostor, 0.35, check_every=30, sessions=100)
    assert often.detection_delay < rarely.detection_delay
    assert often.checks_per_session > rarely.checks_per_session


def test_takeover_consecutive_failures_reduce_false_locks():
    rng = np.random.default_rng(1)
    genuine = rng.normal(0.5, 0.15, 200)
    impostor = rng.normal(0.1, 0.15, 200)
    single = simulate_takeover(genuine, impostor, 0.35, check_every=5, failures_to_lock=1, sessions=200)
    triple = simulate_takeover(genuine, impostor, 0.35, check_every=5, failures_to_lock=3, sessions=200)
    assert triple.false_lock_rate < single.false_lock_rate


def test_takeover_rejects_zero_interval():
    with pytest.raises(ValueError, match="check_every must be at least 1 frame, got 0"):
        simulate_takeover([0.5], [0.1], 0.3, check_every=0)


def test_takeover_rejects_empty_scores():
    with pytest.raises(ValueError, match="Both genuine and impostor scores"):
        simulate_takeover([], [0.1], 0.3, check_every=1)
