"""train.tensorboard=true: TensorBoard event files mirror metrics.jsonl, the sample grids and weight histograms;
without TensorBoard installed the run stops with a one-line ConfigError."""

import json
import sys

import pytest

from genlab.config import apply_overrides, build_run_config
from genlab.errors import ConfigError
from genlab.training.run import train


def tiny_rbm(dataset, out, *extra):
    overrides = [f"data.dataset={dataset}", "data.val_size=64", "data.batch_size=16", "data.binarize=dynamic",
                 "model.n_hidden=12", "model.n_chains=16", "model.sample_steps=5", "optim.name=sgd",
                 "optim.lr=0.05", "train.epochs=2", "train.log_every=7", "train.num_samples=16", "train.seed=3",
                 "train.progress=false", "train.device=cpu", f"train.out_dir={out}", *extra]
    return build_run_config(apply_overrides({"model_name": "rbm"}, overrides))


def test_tensorboard_gets_the_metrics_rows_sample_grids_and_a_weight_histogram_per_epoch(tiny_images, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_rbm(tiny_images, tmp_path, "train.tensorboard=true"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    (val_row,) = [r for r in rows if r["split"] == "val"][-1:]

    board = EventAccumulator(str(run_dir / "tensorboard"),
                             size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    board.Reload()
    tags = board.Tags()
    loss = board.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train_rows] and len(loss) == 8  # 2 epochs x 28 steps / 7
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train_rows], rel=1e-5)
    assert "train/lr" in tags["scalars"]
    for key in set(val_row) - {"step", "split"}:
        (event,) = board.Scalars(f"val/{key}")[-1:]
        assert event.step == val_row["step"] and event.value == pytest.approx(val_row[key], rel=1e-5)

    assert any(tag.startswith("samples/") for tag in tags["images"])
    image = board.Images(tags["images"][0])[-1]
    assert image.step == 56 and image.width > 8 and image.height > 8

    weights = [tag for tag in tags["histograms"] if tag.startswith("weights/")]
    assert weights, tags["histograms"]
    assert [e.step for e in board.Histograms(weights[0])] == [28, 56]  # once per epoch


def test_without_tensorboard_installed_the_option_is_a_one_line_config_error(tiny_images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails as if not installed
    with pytest.raises(ConfigError) as caught:
        train(tiny_rbm(tiny_images, tmp_path, "train.tensorboard=true", "train.max_steps=1"))
    assert str(caught.value) == 'train.tensorboard=true needs TensorBoard: pip install "genlab[tensorboard]"'
