"""Hopfield network: Hebbian and projection storage, energy descent, recall, capacity, and the engine path."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab.config import apply_overrides, build_run_config
from genlab.errors import ConfigError, DataError
from genlab.models.hopfield import (
    Hopfield,
    HopfieldConfig,
    _async_sweep,
    capacity_curve,
    corrupt,
    critical_load,
    energy,
    hebbian_weights,
    overlap,
    projection_weights,
    run_recall,
    zero_field_tolerance,
)
from genlab.training.checkpoint import load_model
from genlab.training.run import train


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matrices: one thread avoids OpenMP spin-waiting on a busy machine."""
    torch.set_num_threads(1)


def random_patterns(count: int, n_units: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(count, n_units, generator=generator) < 0.5, -1.0, 1.0)


def naive_sweep(weights: torch.Tensor, state: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The textbook sequential sweep, one unit at a time (float64), checking energy descent at every update."""
    weights, state = weights.double(), state.double().clone()
    tolerance = zero_field_tolerance(weights)
    for row in range(state.shape[0]):
        for unit in order[row].tolist():
            before = float(energy(weights, state[row]))
            field = float(weights[unit] @ state[row])
            if abs(field) > tolerance:
                state[row, unit] = 1.0 if field > 0 else -1.0
            assert float(energy(weights, state[row])) <= before + 1e-9
    return state


def test_hebbian_weights_match_the_outer_product_sum():
    patterns = random_patterns(4, 12, seed=0)
    expected = torch.zeros(12, 12)
    for xi in patterns:
        expected += torch.outer(xi, xi) / 12
    expected.fill_diagonal_(0.0)
    weights = hebbian_weights(patterns)
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.equal(weights, weights.T)
    assert torch.all(weights.diagonal() == 0)


def test_energy_is_minus_half_s_w_s():
    weights = hebbian_weights(random_patterns(3, 10, seed=1))
    state = random_patterns(5, 10, seed=2)
    expected = torch.stack([-0.5 * s @ weights @ s for s in state])
    assert torch.allclose(energy(weights, state), expected, atol=1e-5)
    assert torch.allclose(energy(weights, state[0]), expected[0], atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_units=st.integers(2, 24), count=st.integers(1, 12))
def test_event_driven_sweep_equals_the_sequential_sweep_and_never_raises_energy(seed, n_units, count):
    # Any load, including far beyond capacity; the naive sweep asserts energy descent at every single update.
    weights = hebbian_weights(random_patterns(count, n_units, seed))
    state = random_patterns(3, n_units, seed + 1)
    order = torch.rand(3, n_units, generator=torch.Generator().manual_seed(seed + 2)).argsort(1)
    assert torch.equal(_async_sweep(weights.double(), state.double(), order), naive_sweep(weights, state, order))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), load=st.floats(0.02, 0.6))
def test_asynchronous_recall_energy_never_increases(seed, load):
    n_units = 60
    weights = hebbian_weights(random_patterns(max(1, round(load * n_units)), n_units, seed))
    start = random_patterns(8, n_units, seed + 1)
    states, energies = run_recall(weights, start, steps=6, mode="async",
                                  generator=torch.Generator().manual_seed(seed))
    assert states.shape == (7, 8, n_units) and energies.shape == (7, 8)
    assert torch.all(energies[1:] <= energies[:-1] + 1e-5)
    assert torch.all((states == 1) | (states == -1))


def test_projection_rule_is_symmetric_and_makes_correlated_patterns_fixed_points():
    base = random_patterns(1, 80, seed=3)
    # Strongly correlated patterns: each differs from a shared base in 10% of the units.
    patterns = torch.cat([corrupt(base, 0.1, torch.Generator().manual_seed(s)) for s in range(6)])
    weights = projection_weights(patterns)
    assert torch.allclose(weights, weights.T) and torch.all(weights.diagonal() == 0)
    final = run_recall(weights, patterns, steps=2, mode="async", generator=torch.Generator().manual_seed(0))[0][-1]
    assert torch.equal(final, patterns)
    hebbian_final = run_recall(hebbian_weights(patterns), patterns, steps=5, mode="async",
                               generator=torch.Generator().manual_seed(0))[0][-1]
    assert not torch.equal(hebbian_final, patterns)  # crosstalk of the common component wins


def test_stored_patterns_are_stable_under_both_dynamics():
    model = Hopfield(HopfieldConfig(n_units=200, n_patterns=5, one_per_class=False))
    patterns = random_patterns(5, 200, seed=4)
    model.store(patterns)
    for mode in ("async", "sync"):
        states, energies = model.recall(patterns, steps=3, mode=mode, generator=torch.Generator().manual_seed(0))
        assert torch.equal(states[-1], patterns), mode
        assert torch.allclose(energies[-1], energies[0])


def test_storing_in_pieces_equals_storing_at_once():
    patterns = random_patterns(6, 30, seed=5)
    whole = Hopfield(HopfieldConfig(n_units=30, n_patterns=6))
    whole.store(patterns)
    pieces = Hopfield(HopfieldConfig(n_units=30, n_patterns=6))
    pieces.store(patterns[:2])
    pieces.store(patterns[2:])
    assert torch.allclose(whole.W, pieces.W, atol=1e-6)
    assert torch.equal(pieces.stored, patterns)


def test_recall_from_corrupted_copies_at_low_load():
    model = Hopfield(HopfieldConfig(n_units=200, n_patterns=6, corruption=0.2, trials=5, recall_steps=8))
    model.store(random_patterns(6, 200, seed=6))
    stats = model.recall_stats(generator=torch.Generator().manual_seed(1))
    assert stats["start_overlap"] == pytest.approx(0.6, abs=1e-6)  # 20% flipped: m = 1 - 2 * 0.2
    assert stats["recall_accuracy_pct"] >= 95.0
    assert stats["overlap"] > 0.99
    assert stats["energy_drop_per_unit"] > 0


def test_synchronous_updates_can_oscillate_where_asynchronous_ones_settle():
    weights = torch.tensor([[0.0, -1.0], [-1.0, 0.0]])
    start = torch.tensor([[1.0, 1.0]])
    sync_states, _ = run_recall(weights, start, steps=4, mode="sync")
    assert torch.equal(sync_states[1], -start) and torch.equal(sync_states[2], start)  # a 2-cycle
    async_states, async_energy = run_recall(weights, start, steps=4, mode="async",
                                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(async_states[-1], async_states[-2])  # a fixed point
    assert float(async_energy[-1, 0]) == pytest.approx(-1.0)


def test_corrupt_flips_exactly_the_requested_fraction():
    patterns = random_patterns(7, 50, seed=7)
    corrupted = corrupt(patterns, 0.3, torch.Generator().manual_seed(0))
    assert torch.all((corrupted != patterns).sum(1) == 15)
    assert torch.allclose(overlap(corrupted, patterns), torch.full((7,), 0.4))


def test_capacity_curve_breaks_down_near_0_14_n():
    loads = [0.05, 0.1, 0.2, 0.35]
    curve = capacity_curve(100, loads, trials=3, steps=10, generator=torch.Generator().manual_seed(0))
    assert curve["patterns"] == [5.0, 10.0, 20.0, 35.0]
    success = curve["success"]
    assert success[0] >= 0.95 and success[1] >= 0.7
    assert success[3] <= 0.3 and curve["mean_overlap"][3] < 0.8
    # Finite N = 100 smears the transition (theory: 0.138 as N -> infinity): a generous window.
    assert 0.08 <= critical_load(loads, success) <= 0.3


def test_critical_load_interpolates_the_crossing():
    assert critical_load([0.1, 0.2, 0.3], [1.0, 0.8, 0.2]) == pytest.approx(0.25)
    assert critical_load([0.1, 0.2], [0.2, 0.1]) == pytest.approx(0.1)
    assert math.isnan(critical_load([0.1, 0.2], [1.0, 0.9]))


def test_bad_input_is_a_clear_error():
    model = Hopfield(HopfieldConfig(n_units=10, n_patterns=2))
    with pytest.raises(ConfigError, match="no stored patterns"):
        model.recall_stats()
    with pytest.raises(DataError, match="-1 and \\+1"):
        model.store(torch.zeros(1, 10))
    with pytest.raises(DataError, match="shape"):
        model.store(torch.ones(1, 9))
    model.store(random_patterns(2, 10, seed=0))
    with pytest.raises(ConfigError, match="n_patterns"):
        model.store(random_patterns(1, 10, seed=1))
    with pytest.raises(ConfigError, match="async or sync"):
        model.recall(random_patterns(1, 10, seed=2), steps=1, mode="parallel")
    with pytest.raises(ConfigError, match="unknown option"):
        model.evaluate([], temperature=1.0)
    for bad in ({"corruption": 1.5}, {"mode": "random"}, {"rule": "oja"}, {"n_patterns": 0},
                {"rule": "projection", "n_units": 10, "n_patterns": 10}):
        with pytest.raises(ConfigError):
            HopfieldConfig(**bad)


def hopfield_config(dataset, out, *extra):
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=16", "model.n_patterns=4",
                 "model.corruption=0.1", "model.trials=4", "train.epochs=1", "train.num_samples=4",
                 "train.progress=false", "train.device=cpu", f"train.out_dir={out}", *extra]
    return build_run_config(apply_overrides({"model_name": "hopfield"}, overrides))


def test_training_stores_one_pattern_per_class_through_the_trainer(tiny_images, tmp_path):
    # Adam with weight decay: Hebbian storage must come out exact whatever optimizer the run names.
    run_dir = train(hopfield_config(tiny_images, tmp_path, "optim.name=adam", "optim.lr=0.1",
                                    "optim.weight_decay=0.1"))
    model, _ = load_model(run_dir)
    assert sorted(model.memory_labels.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(model.W, hebbian_weights(model.stored), atol=1e-6)
    assert torch.all((model.stored == 1) | (model.stored == -1))
    assert list((run_dir / "samples").glob("recalled-step*.png"))
    metrics = model.evaluate([], generator=torch.Generator().manual_seed(0), corruption=0.1)
    assert {"recall_accuracy_pct", "overlap", "bit_error_pct", "n_stored"} <= metrics.keys()
    images = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 8, 8) and set(images.unique().tolist()) <= {0.0, 1.0}


def test_projection_rule_recalls_the_bars_through_the_engine(tiny_images, tmp_path):
    run_dir = train(hopfield_config(tiny_images, tmp_path, "model.rule=projection"))
    model, _ = load_model(run_dir)
    metrics = model.evaluate([], generator=torch.Generator().manual_seed(0))
    assert metrics["recall_accuracy_pct"] == 100.0
    assert metrics["overlap"] == 1.0


def test_mnist_digits_need_the_projection_rule(data_dir):
    from genlab.data.images import load_images

    raw = load_images("mnist", "test", data_dir=str(data_dir), download=False)
    labels = torch.as_tensor(raw.labels)
    first = [int((labels == k).nonzero()[0]) for k in range(10)]
    images = torch.from_numpy(raw.images[first]).float().div(255).reshape(10, 1, 28, 28)
    results = {}
    for rule in ("hebbian", "projection"):
        model = Hopfield(HopfieldConfig(n_units=784, n_patterns=10, rule=rule, image_shape=(1, 28, 28),
                                        corruption=0.2, trials=2, recall_steps=6))
        model.store(model.to_spins(images))
        results[rule] = model.recall_stats(generator=torch.Generator().manual_seed(0))
    assert results["projection"]["recall_accuracy_pct"] >= 90.0
    assert results["hebbian"]["overlap"] < results["projection"]["overlap"]


def test_capacity_benchmark_draws_the_curve_and_records_the_critical_load(tmp_path):
    from genlab.bench.hopfield_bench import capacity_records

    records, notes = capacity_records(tmp_path, n_units=60, loads=[0.05, 0.15, 0.4], trials=1, steps=5)
    assert (tmp_path / "hopfield_capacity.png").stat().st_size > 1000
    critical = records[0]
    assert critical["metric"] == "critical_load" and critical["unit"] == "P/N"
    assert 0.05 <= critical["value"] <= 0.4
    assert {"model", "dataset", "metric", "value", "unit"} <= records[1].keys()
    assert "hopfield_capacity.png" in notes[0]
