"""The weighting rules of benchmarks/learning_curves_weights.py, on densities with known answers."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def weights_module():
    from benchmarks import learning_curves_weights  # on pytest's path (pyproject.toml)

    return learning_curves_weights


def test_stacking_puts_all_weight_on_a_candidate_better_everywhere(weights_module):
    rng = np.random.default_rng(0)
    better = rng.normal(-1.0, 0.3, 12)
    log_density = np.stack([better - 0.5, better, better - 2.0])
    weights = weights_module.stacking_weights(log_density)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > 0.99


def test_stacking_splits_evenly_between_mirror_image_candidates(weights_module):
    """Each candidate is better by the same margin on half of the points: by symmetry the
    objective peaks at equal weights, where a mixture beats either candidate alone."""
    high, low = -0.2, -3.0
    log_density = np.array([[high, high, low, low], [low, low, high, high]])
    weights = weights_module.stacking_weights(log_density)
    np.testing.assert_allclose(weights, [0.5, 0.5], atol=1e-3)


def test_pseudo_bma_weights_are_the_normalised_exponentiated_sums(weights_module):
    log_density = np.array([[-1.0, -2.0], [-1.5, -1.0]])  # sums -3.0 and -2.5
    expected = np.exp([-3.0, -2.5]) / np.exp([-3.0, -2.5]).sum()
    np.testing.assert_allclose(weights_module.pseudo_bma_weights(log_density), expected)
