"""The training loss of the two heads (training.losses): Gaussian age targets, KL plus an L1 term on the
expected age, gender cross-entropy; unknown labels add nothing."""

import math

import torch

from agegender.training.losses import age_gender_loss, gaussian_age_targets


def _batch(expect_shift: float = 0.0):
    """Two faces aged 20 and 50; logits are the targets' log-probabilities shifted by `expect_shift` years."""
    ages = torch.tensor([20.0, 50.0])
    dist = gaussian_age_targets(ages, 101)
    logits = torch.log(gaussian_age_targets(ages + expect_shift, 101).clamp_min(1e-30))
    gender_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gender_logits = torch.tensor([[2.0, -2.0], [-2.0, 2.0]])
    return gender_logits, logits, gender_t, dist, ages


def test_gaussian_targets_are_centred_distributions():
    dist = gaussian_age_targets(torch.tensor([0.0, 30.0, 130.0]), 101, sigma=2.0)
    grid = torch.arange(101.0)
    assert torch.allclose(dist.sum(1), torch.ones(3))
    assert abs(float(dist[1] @ grid) - 30.0) < 1e-4  # away from the ends, the mean is the age
    assert int(dist[2].argmax()) == 100  # an age past the last class is clipped into it


def test_the_l1_term_adds_its_weight_times_the_expected_age_error():
    """With predictions 3 years older than the labels, raising the L1 weight by w adds w x 3 years (the KL and
    gender parts do not depend on it); with predictions equal to the targets only the gender part is left."""
    g, a, gt, dist, ages = _batch(expect_shift=3.0)
    lo, parts_lo = age_gender_loss(g, a, gt, dist, ages, l1_weight=0.05)
    hi, parts_hi = age_gender_loss(g, a, gt, dist, ages, l1_weight=0.55)
    assert math.isclose(float(hi - lo), 0.5 * 3.0, rel_tol=1e-3)
    assert torch.equal(parts_lo["gender"], parts_hi["gender"])
    g, a, gt, dist, ages = _batch()
    exact, parts = age_gender_loss(g, a, gt, dist, ages, l1_weight=1.0)
    assert abs(float(parts["age"])) < 1e-4 and math.isclose(float(exact), float(parts["gender"]), abs_tol=1e-4)


def test_a_heavier_l1_term_pulls_the_expected_age_harder():
    """One gradient step on logits read 3 years old moves their expected age further towards the labels when the
    L1 term weighs more."""
    grid = torch.arange(101.0)

    def expected_after_step(weight: float) -> float:
        g, a, gt, dist, ages = _batch(expect_shift=3.0)
        a = a.clone().requires_grad_(True)
        loss, _ = age_gender_loss(g, a, gt, dist, ages, l1_weight=weight)
        loss.backward()
        stepped = (a - 1.0 * a.grad).detach()
        return float((torch.softmax(stepped, 1) @ grid - ages).mean())

    before = 3.0
    light, heavy = expected_after_step(0.05), expected_after_step(0.5)
    assert 0 < heavy < light < before


def test_the_gender_weight_scales_the_gender_part_alone():
    g, a, gt, dist, ages = _batch(expect_shift=3.0)
    one, parts = age_gender_loss(g, a, gt, dist, ages)
    three, parts3 = age_gender_loss(g, a, gt, dist, ages, gender_weight=3.0)
    assert float(parts["gender"]) > 0 and torch.equal(parts["gender"], parts3["gender"])
    assert math.isclose(float(three - one), 2.0 * float(parts["gender"]), rel_tol=1e-5)
    none, _ = age_gender_loss(g, a, gt, dist, ages, gender_weight=0.0)
    assert math.isclose(float(none), float(parts["age"]), rel_tol=1e-6)


def test_unknown_labels_add_nothing():
    g, a, gt, dist, ages = _batch(expect_shift=3.0)
    gt[1] = 0.0  # second face: gender unknown
    dist[1] = 0.0  # and age unknown
    both, _ = age_gender_loss(g, a, gt, dist, ages)
    first, _ = age_gender_loss(g[:1], a[:1], gt[:1], dist[:1], ages[:1])
    assert torch.allclose(both, first)
