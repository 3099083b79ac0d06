"""RBM benchmarks: CD-1 epoch time beside scikit-learn's BernoulliRBM, AIS against exact log Z, and the
test log-likelihood of the quality preset (Salakhutdinov & Murray 2008)."""

from __future__ import annotations

import copy
import time

import torch

from genlab.bench import BenchContext, benchmark
from genlab.config import NO_PRESET, compose_run_config
from genlab.data.datasets import build_data
from genlab.training.run import build_model, train
from genlab.training.trainer import Trainer, seed_everything

SALAKHUTDINOV_CD25 = {"value": -86.34, "source": "Salakhutdinov & Murray 2008, CD-25, 500 hidden",
                      "higher_is_better": True}


def _config(ctx: BenchContext, overrides: list[str], preset: str | None = None):
    flags = [f"train.device={ctx.device}", "train.progress=false", f"train.out_dir={ctx.work_dir}"]
    if ctx.data_dir:
        flags.append(f"data.data_dir={ctx.data_dir}")
    return compose_run_config("rbm", preset=preset or NO_PRESET, overrides=flags + overrides)


def _genlab_epoch_seconds(ctx: BenchContext, overrides: list[str]):
    """Wall time of one training epoch through the genlab Trainer (no callbacks, data already in memory)."""
    config = _config(ctx, overrides)
    seed_everything(config.train.seed)
    data = build_data(config.data, seed=config.train.seed, splits=("train", "test"))
    model, config = build_model(config, data)
    model.init_from_data(data.train)
    device = torch.device(ctx.device)
    trainer = Trainer(model.to(device), config, data, device=device, callbacks=[])
    if device.type == "cuda":  # CUDA context, cuBLAS handles and kernel loading stay out of the epoch time
        with torch.random.fork_rng(devices=[device]):
            warm_up = copy.deepcopy(model)
            for _, batch in zip(range(3), data.train.iter_from(0)):
                warm_up.loss(tuple(t.to(device) for t in batch))[0].backward()
        torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.fit()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, model.cpu(), data


@benchmark("rbm-speed", suites=("quick", "full"),
           description="CD-1, 500 hidden, batch 100, one MNIST epoch: genlab vs scikit-learn BernoulliRBM")
def rbm_speed(ctx: BenchContext) -> list[dict]:
    import numpy as np
    from sklearn.neural_network import BernoulliRBM
    from threadpoolctl import threadpool_info  # a scikit-learn dependency

    # Same settings on both sides: grey-level MNIST in [0, 1], CD-1 (sklearn's only rule), 500 hidden, batch
    # 100, plain SGD at sklearn's default learning rate 0.1, one pass over the 60000 training images.
    overrides = ["data.binarize=none", "data.val_size=0", "data.batch_size=100", "model.n_hidden=500",
                 "model.cd_k=1", "optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.0", "train.epochs=1",
                 "train.validate=false"]
    genlab_s, model, data = _genlab_epoch_seconds(ctx, overrides)
    train_x = data.train.tensors[0].reshape(len(data.train.tensors[0]), -1).numpy().astype(np.float64)
    test_x = data.test.tensors[0].reshape(len(data.test.tensors[0]), -1)
    reference = BernoulliRBM(n_components=500, learning_rate=0.1, batch_size=100, n_iter=1, random_state=0)
    started = time.perf_counter()
    reference.fit(train_x)
    sklearn_s = time.perf_counter() - started
    # Pseudo-likelihood on the test set, thresholded to binary as both estimators assume.
    binary_test = (test_x >= 0.5).float()
    generator = torch.Generator().manual_seed(0)
    genlab_pll = float(model.pseudo_log_likelihood(binary_test, generator).mean())
    sklearn_pll = float(np.mean(reference.score_samples(binary_test.numpy().astype(np.float64))))
    common = {"model": "rbm", "dataset": "mnist"}
    blas_threads = sorted({pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"})
    ctx.notes.append(f"torch threads {torch.get_num_threads()}; sklearn uses numpy's BLAS on the same cores "
                     f"(BLAS threads {blas_threads}). "
                     "Pseudo-likelihoods are stochastic one-bit-flip estimates (sklearn's score_samples).")
    return [
        {**common, "metric": "epoch_time_genlab", "value": round(genlab_s, 3), "unit": "s/epoch"},
        {**common, "model": "sklearn BernoulliRBM", "metric": "epoch_time_sklearn", "value": round(sklearn_s, 3),
         "unit": "s/epoch", "device": "cpu"},
        {**common, "metric": "speedup_vs_sklearn", "value": round(sklearn_s / genlab_s, 2), "unit": "x",
         "reference": {"value": 5.0, "source": "target: >= 5x", "higher_is_better": True}},
        {**common, "metric": "test_pseudo_ll_genlab", "value": round(genlab_pll, 2), "unit": "nats/image"},
        {**common, "model": "sklearn BernoulliRBM", "metric": "test_pseudo_ll_sklearn",
         "value": round(sklearn_pll, 2), "unit": "nats/image"},
    ]


@benchmark("rbm-ais-exact", suites=("quick", "full"),
           description="AIS log Z against exact enumeration on an MNIST RBM with 20 hidden units")
def rbm_ais_exact(ctx: BenchContext) -> list[dict]:
    overrides = ["data.binarize=dynamic", "data.val_size=0", "model.n_hidden=20", "optim.name=sgd",
                 "optim.lr=0.05", "optim.momentum=0.5", "train.epochs=2", "train.validate=false"]
    _, model, data = _genlab_epoch_seconds(ctx, overrides)
    started = time.perf_counter()
    result = model.evaluate(iter(data.test), ais_runs=100, ais_betas=14500)
    wall = time.perf_counter() - started
    common = {"model": "rbm-20h", "dataset": "mnist", "wall_s": round(wall, 2)}
    return [
        {**common, "metric": "log_z_exact", "value": round(result["log_z_exact"], 3), "unit": "nats"},
        {**common, "metric": "log_z_ais", "value": round(result["log_z_ais"], 3), "unit": "nats"},
        {**common, "metric": "ais_abs_error", "value": round(abs(result["log_z_ais"] - result["log_z_exact"]), 4),
         "unit": "nats"},
        {**common, "metric": "test_ll_exact_nats", "value": round(result["test_loglik_nats"], 3),
         "unit": "nats/image"},
    ]


@benchmark("rbm-loglik", suites=("full",),
           description="Train the rbm-mnist-pcd500 preset and report the AIS test log-likelihood")
def rbm_loglik(ctx: BenchContext) -> list[dict]:
    config = _config(ctx, [], preset="rbm-mnist-pcd500")
    cpu_started, started = time.process_time(), time.perf_counter()
    run_dir = train(config)
    train_wall, train_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    from genlab.training.checkpoint import load_model

    model, run_config = load_model(run_dir)
    data = build_data(run_config.data, seed=run_config.train.seed, splits=("test",))
    started = time.perf_counter()
    result = model.evaluate(iter(data.test), ais_runs=100, ais_betas=14500)
    eval_wall = time.perf_counter() - started
    common = {"model": "rbm-500h-pcd", "dataset": "mnist"}
    ctx.notes.append(f"test set stochastically binarized once with a fixed seed; training: {train_wall:.0f} s wall, "
                     f"{train_cpu:.0f} s CPU; AIS: 100 runs x 14500 "
                     f"temperatures, {eval_wall:.0f} s; log Z = {result['log_z']:.2f} "
                     f"[{result['log_z_ais_lower']:.2f}, {result['log_z_ais_upper']:.2f}] (mean ± 3 s.e.)")
    return [
        {**common, "metric": "test_loglik_nats", "value": round(result["test_loglik_nats"], 2), "unit": "nats/image",
         "reference": SALAKHUTDINOV_CD25, "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1)},
        {**common, "metric": "ais_interval_lower_nats", "value": round(result["test_loglik_nats_lower"], 2),
         "unit": "nats/image"},
        {**common, "metric": "ais_interval_upper_nats", "value": round(result["test_loglik_nats_upper"], 2),
         "unit": "nats/image"},
    ]
