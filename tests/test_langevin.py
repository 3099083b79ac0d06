"""SGLD (genlab.sampling.langevin): exactness on a known energy, operation order, clipping, trajectories, errors."""

import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.sampling.langevin import langevin


@pytest.fixture(autouse=True)
def _one_thread(_few_threads):
    torch.set_num_threads(1)


def quadratic(mu: float, sigma: float):
    """E(x) = |x - mu|² / (2 sigma²) per row: the energy of N(mu, sigma² I)."""
    return lambda x: ((x - mu) ** 2).flatten(1).sum(1) / (2 * sigma**2)


def test_unadjusted_langevin_on_a_gaussian_energy_reaches_the_target_mean_and_variance():
    mu, sigma, eps = 0.7, 1.3, 0.02
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(8000, 2, generator=generator) * 3.0 - 2.0  # far from the target
    result = langevin(quadratic(mu, sigma), x0, steps=1500, step_size=eps, noise_std=math.sqrt(2 * eps),
                      grad_clip=0.0, bounds=None, generator=generator)
    x = result.samples.double()
    # The noised iterates y follow y' = (1 - eps/s²) y + eps mu / s² + sqrt(2 eps) xi, whose stationary variance is
    # s² / (1 - eps / (2 s²)); the returned x = y - eps (y - mu) / s² has variance (1 - eps/s²)² times that.
    shrink = 1.0 - eps / sigma**2
    exact_var = shrink**2 * sigma**2 / (1.0 - eps / (2 * sigma**2))
    n = x.numel()
    assert abs(float(x.mean()) - mu) < 4 * math.sqrt(exact_var / n)
    assert float(x.var()) == pytest.approx(exact_var, rel=4 * math.sqrt(2.0 / n))
    # ... and the discretisation bias is O(eps): the target variance itself within 2 eps relative.
    assert float(x.var()) == pytest.approx(sigma**2, rel=2 * eps / sigma**2 + 4 * math.sqrt(2.0 / n))


def test_one_step_follows_the_seed_order_noise_clip_gradient_clip_step_clip():
    torch.manual_seed(0)
    weights = torch.randn(3, 4, 4)
    energy = lambda x: (x * weights).flatten(1).sum(1) + (x**2).flatten(1).sum(1)  # noqa: E731
    x0 = torch.rand(5, 3, 4, 4) * 2.4 - 1.2  # partly outside [-1, 1]
    step, noise, clip = 0.5, 0.3, 0.4
    result = langevin(energy, x0, steps=1, step_size=step, noise_std=noise, grad_clip=clip,
                      generator=torch.Generator().manual_seed(7))
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    x = (x0 + noise * xi).clamp(-1.0, 1.0)
    grad = (weights + 2 * x).clamp(-clip, clip)  # ∇E, clipped element-wise
    expected = (x - step * grad).clamp(-1.0, 1.0)
    torch.testing.assert_close(result.samples, expected, rtol=0, atol=1e-6)
    unclipped_norm = (weights + 2 * x).flatten(1).norm(dim=1)
    torch.testing.assert_close(result.grad_norm, unclipped_norm)


def test_bounds_hold_at_every_frame_and_clipped_moves_are_bounded():
    energy = lambda x: -1e6 * x.flatten(1).sum(1)  # noqa: E731  (pushes every pixel up, violently)
    x0 = torch.rand(6, 1, 5, 5, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = langevin(energy, x0, steps=20, step_size=0.01, noise_std=0.0, grad_clip=1.0, bounds=(-1.0, 1.0),
                      every=1)
    assert result.frames.shape == (21, 6, 1, 5, 5)
    assert float(result.frames.min()) >= -1.0 and float(result.frames.max()) <= 1.0
    moves = (result.frames[1:] - result.frames[:-1]).abs()
    assert float(moves.max()) <= 0.01 * 1.0 + 1e-7  # step_size · grad_clip
    torch.testing.assert_close(result.frames[0], x0)
    torch.testing.assert_close(result.frames[-1], result.samples)
    wild = langevin(energy, x0, steps=3, step_size=1.0, noise_std=5.0, grad_clip=0.0, bounds=(-0.5, 0.25))
    assert float(wild.samples.min()) >= -0.5 and float(wild.samples.max()) <= 0.25


def test_trajectory_frames_every_k_steps_and_reproducibility():
    energy = quadratic(0.0, 1.0)
    x0 = torch.zeros(4, 3)
    first = langevin(energy, x0, steps=10, step_size=0.1, noise_std=0.2, bounds=None, every=3,
                     generator=torch.Generator().manual_seed(3))
    second = langevin(energy, x0, steps=10, step_size=0.1, noise_std=0.2, bounds=None, every=3,
                      generator=torch.Generator().manual_seed(3))
    assert first.frames.shape == (10 // 3 + 1, 4, 3)
    assert torch.equal(first.samples, second.samples) and torch.equal(first.frames, second.frames)
    assert langevin(energy, x0, steps=4, step_size=0.1, noise_std=0.2).frames is None
    # frame k is the state after 3k steps: rerunning 6 steps from the same stream lands on frame 2
    six = langevin(energy, x0, steps=6, step_size=0.1, noise_std=0.2, bounds=None,
                   generator=torch.Generator().manual_seed(3))
    assert torch.equal(six.samples, first.frames[2])


def test_gradients_flow_to_the_input_only_even_under_no_grad():
    weight = torch.nn.Parameter(torch.tensor(2.0))
    energy = lambda x: weight * (x**2).sum(1)  # noqa: E731
    global_state = torch.get_rng_state()
    with torch.no_grad():
        result = langevin(energy, torch.ones(3, 2), steps=5, step_size=0.1, noise_std=0.1, bounds=None,
                          generator=torch.Generator().manual_seed(0))
    assert weight.grad is None
    assert not result.samples.requires_grad
    assert torch.equal(torch.get_rng_state(), global_state), "a given generator must not consume the global RNG"
    assert float(result.samples.abs().max()) < 1.0  # moved downhill towards 0


@pytest.mark.parametrize("settings, message", [
    ({"step_size": -0.1}, "step size"),
    ({"noise_std": -1.0}, "noise std"),
    ({"grad_clip": -0.03}, "gradient clip"),
    ({"steps": -1}, "steps"),
    ({"bounds": (1.0, -1.0)}, "bounds"),
    ({"every": -2}, "every"),
    ({"step_size": float("nan")}, "step size"),
])
def test_bad_settings_are_config_errors(settings, message):
    arguments = {"steps": 2, "step_size": 0.1, "noise_std": 0.01, **settings}
    with pytest.raises(ConfigError, match=message):
        langevin(quadratic(0.0, 1.0), torch.zeros(2, 2), **arguments)
