"""The Bernoulli RBM: energy math against brute force, samplers, the CD/PCD surrogate, the model contract."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab import registry
from genlab.config import from_dict
from genlab.errors import CheckpointError, ConfigError, DataError
from genlab.eval.ais import exact_log_partition
from genlab.models.base import DataInfo
from genlab.models.rbm import RBM, RBMConfig


def all_states(n: int) -> torch.Tensor:
    """Every binary vector of length n, (2^n, n) float64."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def tiny_rbm(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0, **kwargs) -> RBM:
    """An RBM in float64 with N(0, scale²) weights and biases from a seeded generator."""
    model = RBM(RBMConfig(n_visible=n_visible, n_hidden=n_hidden, **kwargs)).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W.copy_(torch.randn(n_hidden, n_visible, generator=g, dtype=torch.float64) * scale)
        model.b.copy_(torch.randn(n_visible, generator=g, dtype=torch.float64) * scale)
        model.c.copy_(torch.randn(n_hidden, generator=g, dtype=torch.float64) * scale)
    return model


def brute_free_energy(model: RBM, v: torch.Tensor) -> torch.Tensor:
    """-log Σ_h exp(-E(v, h)) with E(v, h) = -v·b - h·c - h·W v, enumerating h."""
    H = all_states(model.config.n_hidden)
    W, b, c = model.W.detach(), model.b.detach(), model.c.detach()
    neg_energy = (v @ b)[:, None] + (H @ c)[None, :] + v @ W.t() @ H.t()
    return -torch.logsumexp(neg_energy, 1)


def exact_visible_distribution(model: RBM) -> tuple[torch.Tensor, torch.Tensor]:
    """All visible states (2^D, D) and their exact probabilities, by brute-force enumeration of v and h."""
    V = all_states(model.config.n_visible)
    log_p = -brute_free_energy(model, V)
    return V, torch.softmax(log_p, 0)


def prototype_data(n: int, n_visible: int, seed: int) -> torch.Tensor:
    """n binary vectors near one of three random prototypes (5% of the bits flipped), float32."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(3, n_visible, generator=g) < 0.5).float()
    labels = torch.randint(0, 3, (n,), generator=g)
    flips = (torch.rand(n, n_visible, generator=g) < 0.05).float()
    return (prototypes[labels] - flips).abs()


@pytest.fixture(autouse=True)
def _isolated_rng_and_one_thread():
    # The loss draws from the global RNG: keep tests independent of each other. These tensors are tiny, and on
    # a shared machine one intra-op thread is much faster than two competing for busy cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- config

def test_config_validation_names_the_bad_field():
    for kwargs, field in [({"n_hidden": 0}, "n_hidden"), ({"n_visible": 0}, "n_visible"), ({"cd_k": 0}, "cd_k"),
                          ({"n_chains": 0}, "n_chains"), ({"sparsity_target": 1.0}, "sparsity_target"),
                          ({"sparsity_cost": -1.0}, "sparsity_cost"), ({"sparsity_cost": 0.1}, "sparsity_target"),
                          ({"init_std": 0.0}, "init_std"), ({"ais_betas": 1}, "ais_betas"),
                          ({"ais_runs": -1}, "ais_runs"), ({"sample_steps": -1}, "sample_steps"),
                          ({"exact_max_hidden": 40}, "exact_max_hidden")]:
        with pytest.raises(ConfigError, match=field):
            RBMConfig(**kwargs)
    config = from_dict(RBMConfig, {"n_hidden": "25", "persistent": "true", "sparsity_target": "0.1",
                                   "sparsity_cost": "1e-3"}, "model")
    assert config.n_hidden == 25 and config.persistent is True and config.sparsity_cost == 1e-3


def test_registered_and_adapts_to_the_data():
    entry = registry.get("rbm")
    assert entry.model_cls is RBM and entry.config_cls is RBMConfig and entry.default_dataset == "mnist"
    adapted = RBM.adapt_config(RBMConfig(), DataInfo(kind="image", shape=(1, 32, 32), binary=True))
    assert adapted.n_visible == 1024 and RBM(dataclasses.replace(adapted, n_hidden=4)).image_shape == (1, 32, 32)
    with pytest.raises(ConfigError, match="scale=unit"):
        RBM.adapt_config(RBMConfig(), DataInfo(kind="image", shape=(1, 28, 28), value_range=(-1.0, 1.0)))
    with pytest.raises(ConfigError):
        RBM.adapt_config(RBMConfig(), DataInfo(kind="text"))


# ---------------------------------------------------------------------------------------------- energy math

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 4.0), n_visible=st.integers(1, 6),
       n_hidden=st.integers(1, 5))
def test_free_energy_equals_brute_force_marginalisation(seed, scale, n_visible, n_hidden):
    model = tiny_rbm(n_visible, n_hidden, scale, seed)
    V = all_states(n_visible)
    torch.testing.assert_close(model.free_energy(V), brute_free_energy(model, V), rtol=1e-10, atol=1e-10)


def test_free_energy_is_finite_for_huge_weights():
    model = tiny_rbm(20, 10, scale=1e4, seed=1).float()
    v = (torch.rand(8, 20, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    energy = model.free_energy(v)
    assert torch.isfinite(energy).all()
    # For |x| >> 1, softplus(x) = max(x, 0) up to exp(-|x|): compare with the piecewise-linear limit.
    limit = -(v @ model.b) - torch.relu(v @ model.W.t() + model.c).sum(1)
    torch.testing.assert_close(energy, limit, rtol=1e-4, atol=1.0)


def test_conditionals_match_the_joint_distribution():
    # p(h_j = 1 | v) from the model equals the brute-force conditional of the joint.
    model = tiny_rbm(4, 3, seed=2)
    V, H = all_states(4), all_states(3)
    W, b, c = model.W.detach(), model.b.detach(), model.c.detach()
    joint = torch.softmax(((V @ b)[:, None] + (H @ c)[None, :] + V @ W.t() @ H.t()).flatten(), 0).view(16, 8)
    p_h_given_v = joint / joint.sum(1, keepdim=True)
    torch.testing.assert_close(model.hidden_probs(V), p_h_given_v @ H)
    p_v_given_h = joint / joint.sum(0, keepdim=True)
    torch.testing.assert_close(model.visible_probs(H), (V.t() @ p_v_given_h).t())


# ---------------------------------------------------------------------------------------------- sampling

def test_sampled_units_are_binary_independent_and_have_the_right_frequencies():
    model = RBM(RBMConfig(n_visible=6, n_hidden=8))
    p_hidden = torch.linspace(0.05, 0.95, 8)
    p_visible = torch.tensor([0.02, 0.2, 0.4, 0.6, 0.8, 0.98])
    with torch.no_grad():
        model.W.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(0))  # irrelevant at v = 0 / h = 0
        model.c.copy_(torch.logit(p_hidden))  # pre-activations in (-2.9, 2.9): comparing those to U(0,1) fails
        model.b.copy_(torch.logit(p_visible))
    n = 20000
    g = torch.Generator().manual_seed(1)
    h = model.sample_hidden(torch.zeros(n, 6), g)
    v = model.sample_visible(torch.zeros(n, 8), g)
    for draws, probs in ((h, p_hidden), (v, p_visible)):
        assert set(draws.unique().tolist()) <= {0.0, 1.0}
        tolerance = 4 * torch.sqrt(probs * (1 - probs) / n)
        assert bool(((draws.mean(0) - probs).abs() < tolerance).all()), (draws.mean(0), probs)
        # Units are independent given the other layer: one shared uniform per row would make P(both on)
        # = min(p_i, p_j) instead of p_i·p_j.
        both = (draws[:, :, None] * draws[:, None, :]).mean(0)
        expected = probs[:, None] * probs[None, :]
        off_diagonal = ~torch.eye(len(probs), dtype=torch.bool)
        assert float((both - expected)[off_diagonal].abs().max()) < 0.015
        # ... and rows are independent too (not one uniform per unit shared by the batch).
        assert float(draws.std(0).min()) > 0.1


def test_gibbs_chain_reproduces_the_exact_visible_distribution():
    model = tiny_rbm(4, 3, scale=1.0, seed=3)
    states, exact = exact_visible_distribution(model)
    g = torch.Generator().manual_seed(4)
    v = (torch.rand(4000, 4, generator=g, dtype=torch.float64) < 0.5).double()
    counts = torch.zeros(16, dtype=torch.float64)
    codes = 2 ** torch.arange(3, -1, -1)  # matches itertools.product order
    with torch.no_grad():
        for step in range(150):
            v, h = model.gibbs_step(v, g)
            assert h.shape == (4000, 3)
            if step >= 100:  # burn-in, then 50 sweeps x 4000 chains = 200k (correlated) samples
                counts += torch.bincount((v.long() * codes).sum(1), minlength=16).double()
    total_variation = 0.5 * float((counts / counts.sum() - exact).abs().sum())
    assert total_variation < 0.03
    # The bound is meaningful: the exact distribution is far from uniform.
    assert 0.5 * float((exact - 1 / 16).abs().sum()) > 0.15


def test_gibbs_chain_frames_and_sample_shapes():
    model = RBM(RBMConfig(n_hidden=16))
    g = torch.Generator().manual_seed(0)
    frames = model.gibbs_chain(torch.zeros(3, 784), 10, g, return_every=5)
    assert frames.shape == (2, 3, 784)
    samples = model.sample(5, generator=g, steps=3)
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    again = model.sample(5, generator=torch.Generator().manual_seed(7), steps=3)
    assert torch.equal(again, model.sample(5, generator=torch.Generator().manual_seed(7), steps=3))
    from_init = model.sample(2, generator=g, steps=0, init=torch.ones(2, 1, 28, 28))
    assert torch.equal(from_init, torch.ones(2, 1, 28, 28))
    assert RBM(RBMConfig(n_visible=10, n_hidden=3)).sample(4, steps=2).shape == (4, 10)
    assert RBM(RBMConfig(n_visible=16, n_hidden=3)).sample(4, steps=2).shape == (4, 1, 4, 4)
    assert model.filters(10).shape == (10, 1, 28, 28) and model.filters().shape == (16, 1, 28, 28)
    assert model.reconstruct(torch.rand(3, 1, 28, 28)).shape == (3, 1, 28, 28)
    with pytest.raises(ConfigError):
        model.sample(0)


# ---------------------------------------------------------------------------------------------- learning rule

def test_surrogate_gradient_is_the_textbook_cd1_update():
    model = tiny_rbm(6, 5, scale=0.5, seed=5)
    x = (torch.rand(7, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64) < 0.5).double()
    torch.manual_seed(123)
    loss, logs = model.loss((x, torch.zeros(7)))
    loss.backward()

    # The same chain by hand: one uniform per hidden unit, then one per visible unit, from the global RNG.
    torch.manual_seed(123)
    W, b, c = model.W.detach(), model.b.detach(), model.c.detach()
    ph_data = torch.sigmoid(x @ W.t() + c)
    h = (torch.rand(7, 5, dtype=torch.float64) < ph_data).double()
    pv = torch.sigmoid(h @ W + b)
    v_model = (torch.rand(7, 6, dtype=torch.float64) < pv).double()
    ph_model = torch.sigmoid(v_model @ W.t() + c)
    # ΔW = <h vᵀ>_data - <h vᵀ>_model (probabilities for h); the surrogate's gradient is -ΔW / B.
    torch.testing.assert_close(model.W.grad, -(ph_data.t() @ x - ph_model.t() @ v_model) / 7)
    torch.testing.assert_close(model.b.grad, -(x.mean(0) - v_model.mean(0)))
    torch.testing.assert_close(model.c.grad, -(ph_data.mean(0) - ph_model.mean(0)))
    # Logs: reconstruction cross-entropy per image from that up-down pass, mean free energy of the data.
    expected_ce = float(-(x * torch.log(pv) + (1 - x) * torch.log1p(-pv)).sum() / 7)
    assert logs["recon_ce_nats"] == pytest.approx(expected_ce, rel=1e-6)
    assert logs["free_energy"] == pytest.approx(float(model.free_energy(x).detach().mean()), rel=1e-9)
    assert all(isinstance(value, float) for value in logs.values())


def test_cd_k_runs_k_sweeps_and_sparsity_adds_the_cross_entropy_gradient():
    x = (torch.rand(9, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64) < 0.5).double()
    plain = tiny_rbm(6, 5, scale=0.5, seed=8, cd_k=3)
    sparse = tiny_rbm(6, 5, scale=0.5, seed=8, cd_k=3, sparsity_target=0.1, sparsity_cost=0.5)
    for model in (plain, sparse):
        torch.manual_seed(9)
        model.loss((x, None))[0].backward()

    torch.manual_seed(9)
    W, b, c = plain.W.detach(), plain.b.detach(), plain.c.detach()
    ph_data = torch.sigmoid(x @ W.t() + c)
    h = (torch.rand(9, 5, dtype=torch.float64) < ph_data).double()
    v = (torch.rand(9, 6, dtype=torch.float64) < torch.sigmoid(h @ W + b)).double()
    for _ in range(2):
        h = (torch.rand(9, 5, dtype=torch.float64) < torch.sigmoid(v @ W.t() + c)).double()
        v = (torch.rand(9, 6, dtype=torch.float64) < torch.sigmoid(h @ W + b)).double()
    ph_model = torch.sigmoid(v @ W.t() + c)
    torch.testing.assert_close(plain.W.grad, -(ph_data.t() @ x - ph_model.t() @ v) / 9)

    # d/dc_j of -cost·[p log q_j + (1-p) log(1-q_j)], q_j = mean_n σ(pre_nj): cost·(q-p)/(q(1-q))·mean σ'.
    q = ph_data.mean(0)
    dq_dc = (ph_data * (1 - ph_data)).mean(0)
    extra = 0.5 * (q - 0.1) / (q * (1 - q)) * dq_dc
    torch.testing.assert_close(sparse.c.grad - plain.c.grad, extra)
    torch.testing.assert_close(sparse.b.grad, plain.b.grad)


def test_pcd_chains_persist_across_calls_and_round_trip_through_extra_state():
    model = tiny_rbm(6, 4, scale=0.5, seed=10, persistent=True, n_chains=5)
    x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64) < 0.5).double()
    assert model.extra_state() == {}
    torch.manual_seed(0)
    model.loss((x, None))
    chains = model.chains.clone()
    assert chains.shape == (5, 6) and set(chains.unique().tolist()) <= {0.0, 1.0}
    assert "chains" not in model.state_dict()  # checkpointed through extra_state, not the weights

    # The next call continues the stored chains by one sweep (not restarting from the data).
    torch.manual_seed(1)
    model.loss((x, None))
    torch.manual_seed(1)
    W, b, c = model.W.detach(), model.b.detach(), model.c.detach()
    torch.rand(8, 4, dtype=torch.float64)  # the positive-phase hidden sample (reconstruction log)
    h = (torch.rand(5, 4, dtype=torch.float64) < torch.sigmoid(chains @ W.t() + c)).double()
    expected = (torch.rand(5, 6, dtype=torch.float64) < torch.sigmoid(h @ W + b)).double()
    torch.testing.assert_close(model.chains, expected)

    # Resume: a fresh model with the same weights and the saved chains continues identically.
    state = model.extra_state()
    clone = tiny_rbm(6, 4, scale=0.5, seed=10, persistent=True, n_chains=5)
    clone.load_state_dict(model.state_dict())
    clone.load_extra_state(state)
    torch.manual_seed(2)
    loss_a, _ = model.loss((x, None))
    torch.manual_seed(2)
    loss_b, _ = clone.loss((x, None))
    assert torch.equal(loss_a.detach(), loss_b.detach()) and torch.equal(model.chains, clone.chains)
    with pytest.raises(CheckpointError):
        clone.load_extra_state({"pcd_chains": torch.zeros(5, 7)})


def test_loss_rejects_out_of_range_and_wrongly_sized_data():
    model = RBM(RBMConfig(n_hidden=8))
    x = torch.rand(4, 1, 28, 28)
    x[0, 0, 0, 0] = 1.5
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.loss((x, None))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.loss((torch.full((2, 784), float("nan")), None))
    with pytest.raises(DataError, match="n_visible=784.*got 1024"):
        model.loss((torch.rand(4, 1, 32, 32), None))
    loss, logs = model.loss((torch.rand(4, 1, 28, 28), None))  # grey levels are fine for training
    assert loss.shape == () and math.isfinite(loss.item())


def test_init_from_data_sets_visible_biases_to_the_pixel_log_odds():
    model = RBM(RBMConfig(n_visible=4, n_hidden=2))
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    marginals = model.init_from_data([(x[:2], None), (x[2:], None)])
    expected = torch.tensor([1 - 1e-3, 1e-3, 0.5, 0.25])
    torch.testing.assert_close(marginals, expected)
    torch.testing.assert_close(model.b.detach(), torch.logit(expected))
    torch.testing.assert_close(model.base_rate_logits, torch.logit(expected))
    assert "base_rate_logits" in model.state_dict()


def exact_mean_loglik(model: RBM, x: torch.Tensor) -> float:
    V = all_states(model.config.n_visible)
    log_z = float(torch.logsumexp(-brute_free_energy(model, V), 0))
    return float((-brute_free_energy(model, x.double())).mean()) - log_z


def test_a_few_cd1_steps_increase_the_exact_log_likelihood():
    x = prototype_data(64, 8, seed=12)
    model = tiny_rbm(8, 4, scale=0.01, seed=13).float()
    before = exact_mean_loglik(model.double(), x)
    model.float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    torch.manual_seed(14)
    for _ in range(30):
        loss, _ = model.loss((x, None))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = exact_mean_loglik(model.double(), x)
    assert after > before + 0.5, (before, after)


# ---------------------------------------------------------------------------------------------- monitors, eval

def test_evaluate_matches_brute_force_log_likelihood_and_reports_ais():
    model = tiny_rbm(8, 5, scale=0.7, seed=15)
    x = prototype_data(40, 8, seed=16).double()
    result = model.evaluate([(x[:25], None), (x[25:], None)], ais_runs=50, ais_betas=400)
    assert all(isinstance(value, float) for value in result.values())
    assert result["test_loglik_nats"] == pytest.approx(exact_mean_loglik(model, x), abs=1e-6)
    assert result["log_z_is_exact"] == 1.0 and result["log_z"] == result["log_z_exact"]
    assert abs(result["log_z_ais"] - result["log_z_exact"]) < 0.1
    assert result["log_z_ais_lower"] <= result["log_z_ais"] <= result["log_z_ais_upper"]
    assert result["test_loglik_nats_lower"] <= result["test_loglik_nats_ais"] <= result["test_loglik_nats_upper"]
    assert result["ais_runs"] == 50.0 and result["ais_betas"] == 400.0 and result["n_test"] == 40.0
    # Reproducible by default (fixed-seed AIS generator).
    assert model.evaluate([(x, None)], ais_runs=10, ais_betas=50) == model.evaluate([(x, None)], ais_runs=10,
                                                                                     ais_betas=50)
    exact_only = model.evaluate([(x, None)], ais_runs=0)
    assert "log_z_ais" not in exact_only and exact_only["test_loglik_nats"] == result["test_loglik_nats"]
    ais_only = model.evaluate([(x, None)], ais_runs=20, ais_betas=100, exact=False)
    assert ais_only["log_z_is_exact"] == 0.0 and ais_only["log_z"] == ais_only["log_z_ais"]
    with pytest.raises(DataError, match="binary"):
        model.evaluate([(torch.full((2, 8), 0.5, dtype=torch.float64), None)])


def test_evaluate_refuses_impossible_requests():
    model = RBM(RBMConfig(n_visible=40, n_hidden=30, exact_max_hidden=10))
    x = torch.zeros(2, 40)
    with pytest.raises(ConfigError, match="AIS"):
        model.evaluate([(x, None)], exact=True)
    with pytest.raises(ConfigError, match="ais_runs"):
        model.evaluate([(x, None)], ais_runs=0)


def test_validate_reports_per_image_monitors_and_the_free_energy_gap():
    model = tiny_rbm(8, 5, scale=0.7, seed=17).float().requires_grad_(False)
    train = prototype_data(30, 8, seed=18)
    val = prototype_data(20, 8, seed=19)
    logs = model.validate([(val[:10], None), (val[10:], None)])
    assert set(logs) == {"recon_ce_nats", "free_energy", "pseudo_loglik_nats"}
    assert logs == model.validate([(val[:10], None), (val[10:], None)])  # fixed-seed draws: reproducible
    assert logs["free_energy"] == pytest.approx(float(model.free_energy(val).mean()), rel=1e-5)
    assert logs["pseudo_loglik_nats"] < 0 and logs["recon_ce_nats"] > 0
    gap = model.free_energy_gap([(train, None)], [(val, None)])
    expected = float(model.free_energy(val).mean() - model.free_energy(train).mean())
    assert gap == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_pseudo_likelihood_is_an_unbiased_one_flip_estimate():
    model = tiny_rbm(5, 3, scale=1.0, seed=20)
    _, probs = exact_visible_distribution(model)
    place = 2 ** torch.arange(4, -1, -1)  # binary code -> row of all_states

    def p(states):
        return probs[(states * place).sum(1).long()]

    v = all_states(5)[[3, 17, 30]]
    # Σ_i log p(v_i | v_-i), whose one-flip estimate is D·log σ(F(v with bit i flipped) - F(v)), i uniform.
    exact = torch.zeros(3, dtype=torch.float64)
    for i in range(5):
        flipped = v.clone()
        flipped[:, i] = 1 - flipped[:, i]
        exact += torch.log(p(v) / (p(v) + p(flipped)))
    g = torch.Generator().manual_seed(21)
    estimate = model.pseudo_log_likelihood(v.repeat(4000, 1), g).view(4000, 3).mean(0)
    torch.testing.assert_close(estimate, exact, atol=0.15, rtol=0.0)


@pytest.mark.skipif(not (Path(os.environ.get("GENLAB_DATA", "/work/shared/data")) / "mnist").is_dir(),
                    reason="MNIST not available (set GENLAB_DATA)")
def test_mnist_rbm_with_few_hidden_units_ais_agrees_with_exact():
    import gzip

    import numpy as np

    path = Path(os.environ.get("GENLAB_DATA", "/work/shared/data")) / "mnist" / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as handle:
        raw = handle.read(16 + 2000 * 784)
    images = torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).copy()).float().view(2000, 784) / 255
    x = (images > 0.5).float()
    torch.manual_seed(0)
    model = RBM(RBMConfig(n_hidden=12, init_std=0.01))
    model.init_from_data([(x, None)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    for step in range(100):
        loss, _ = model.loss((x[(step % 20) * 100:(step % 20 + 1) * 100], None))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = model.evaluate([(x[:500], None)], ais_runs=100, ais_betas=1000,
                            generator=torch.Generator().manual_seed(1))
    assert abs(result["log_z_ais"] - result["log_z_exact"]) < 0.5
    assert result["log_z_exact"] == pytest.approx(exact_log_partition(model.W, model.b, model.c))


# ------------------------------------------------------------------ centering (Melchior, Fischer & Wiskott 2016)


def _centered_free_energy(v, W, b_c, c_c, mu, lam):
    """F_c(v) = -(v-μ)·b_c + Σ_j [λ_j a_j - softplus(a_j)], a = c_c + W(v-μ): the centered energy summed over h."""
    a = c_c + (v - mu) @ W.T
    return -((v - mu) @ b_c) + (lam * a - torch.nn.functional.softplus(a)).sum(1)


def test_the_centered_update_is_the_standard_image_of_the_gradient_in_centered_coordinates():
    torch.manual_seed(3)
    rbm = RBM(RBMConfig(n_visible=7, n_hidden=5, centering=True, init_std=0.5))
    with torch.no_grad():
        rbm.b.normal_()
        rbm.c.normal_()
        rbm.visible_offset.uniform_(0.1, 0.9)
        rbm.hidden_offset.uniform_(0.1, 0.9)
    mu, lam = rbm.visible_offset.clone(), rbm.hidden_offset.clone()
    x, v_model = (torch.rand(9, 7) > 0.5).float(), (torch.rand(6, 7) > 0.5).float()
    rbm._centered_surrogate(x, rbm.hidden_probs(x).detach(), v_model).backward()

    W = rbm.W.detach().clone().requires_grad_()
    b_c = (rbm.b.detach() + rbm.W.detach().T @ lam).requires_grad_()  # b = b_c - Wᵀλ
    c_c = (rbm.c.detach() + rbm.W.detach() @ mu).requires_grad_()  # c = c_c - Wμ
    surrogate = (_centered_free_energy(x, W, b_c, c_c, mu, lam).mean()
                 - _centered_free_energy(v_model, W, b_c, c_c, mu, lam).mean())
    surrogate.backward()
    assert torch.allclose(rbm.W.grad, W.grad, atol=1e-6)
    assert torch.allclose(rbm.b.grad, b_c.grad - W.grad.T @ lam, atol=1e-6)
    assert torch.allclose(rbm.c.grad, c_c.grad - W.grad @ mu, atol=1e-6)
    assert torch.allclose(rbm.hidden_offset, lam.lerp(rbm.hidden_probs(x).mean(0), 0.01)), "λ: a running mean"


def test_centering_at_zero_offsets_is_plain_cd_and_keeps_the_loss_value():
    x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    grads, values = [], []
    for centering in (False, True):
        rbm = tiny_rbm(6, 4, centering=centering)
        if centering:
            rbm.visible_offset.zero_()
            rbm.hidden_offset.zero_()
            rbm.config = dataclasses.replace(rbm.config, offset_rate=1e-9)
        torch.manual_seed(1)
        loss, logs = rbm.loss(x)
        loss.backward()
        grads.append([p.grad.clone() for p in (rbm.W, rbm.b, rbm.c)])
        values.append((float(loss), logs["cd_gap"]))
    for plain, centered in zip(*grads):
        assert torch.allclose(plain, centered, atol=1e-6)
    assert values[0] == pytest.approx(values[1]), "the logged loss is the CD gap either way"


def test_a_centered_rbm_starts_at_the_data_mean_saves_its_offsets_and_resumes_exactly(tiny_images, tmp_path):
    from checkpoint_helpers import final_state

    from genlab.config import compose_run_config
    from genlab.training.checkpoint import load_model
    from genlab.training.run import train

    def config(out, steps):
        return compose_run_config("rbm", preset="rbm-quick", overrides={
            "data.dataset": str(tiny_images), "data.val_size": 64, "data.batch_size": 16, "model.n_hidden": 12,
            "model.centering": True, "model.persistent": True, "model.n_chains": 16, "model.sample_steps": 5,
            "train.max_steps": steps, "train.num_samples": 4, "train.progress": False, "train.device": "cpu",
            "train.out_dir": str(out)})

    straight = train(config(tmp_path / "straight", 20))
    partial = train(config(tmp_path / "resumed", 8))
    train(dataclasses.replace(config(tmp_path / "resumed", 20)), resume_dir=partial)
    a, b = final_state(straight), final_state(partial)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model, _ = load_model(straight)
    assert {"visible_offset", "hidden_offset"} <= set(model.state_dict())
    assert 0.0 < float(model.visible_offset.min()) and float(model.visible_offset.max()) < 1.0
