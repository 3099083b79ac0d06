"""genlab from Python: the public API trains, resumes, loads, samples and evaluates as the CLI does, takes
in-memory data with the same checks as files, and raises typed errors (never exits)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import _build_parser, _train_config, main
from genlab.config import compose_run_config
from genlab.errors import CheckpointError, ConfigError, DataError, GenlabError

TINY = {"data.val_size": 64, "data.batch_size": 16, "model.n_hidden": 12, "model.n_chains": 16,
        "model.sample_steps": 20, "train.num_samples": 16, "train.progress": False, "train.threads": 1}


def tiny_train(dataset, out, **extra):
    overrides = {**TINY, **extra.pop("overrides", {})}
    return genlab.train("rbm", dataset=dataset, epochs=extra.pop("epochs", 1), out=out, device="cpu",
                        overrides=overrides, **extra)


def test_import_genlab_is_instant_and_pulls_in_no_torch():
    code = "import sys, genlab; print('torch' in sys.modules, genlab.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", genlab.__version__], result.stderr


def test_models_and_presets_list_the_registry():
    models = genlab.models()
    assert {"rbm", "vae", "char-lstm", "dcgan"} <= set(models)
    assert models["rbm"].default_preset == "rbm-mnist" and models["rbm"].config_cls.__name__ == "RBMConfig"
    assert "rbm-mnist" in genlab.presets() and "vae-mlp-mnist" in genlab.presets()
    from genlab.models import rbm  # the package stays a package of model modules

    assert callable(genlab.models) and rbm.RBM.registry_name == "rbm" and genlab.models.rbm is rbm


def test_the_api_composes_configs_exactly_as_the_cli():
    args = _build_parser().parse_args(["train", "rbm", "--epochs", "3", "--set", "optim.lr=0.02"])
    from_cli = _train_config(args)
    from_api = compose_run_config("rbm", overrides={"train.epochs": 3, "optim.lr": 0.02})
    assert from_cli.to_dict() == from_api.to_dict()
    assert from_api.data.binarize == "dynamic", "a dict-built config gets the model's default preset too"
    nested = compose_run_config("rbm", overrides={"train": {"epochs": 3}, "optim": {"lr": 0.02}})
    assert nested.to_dict() == from_api.to_dict()


def test_train_returns_a_run_to_sample_read_resume_load_and_evaluate(tiny_images, tmp_path):
    run = tiny_train(tiny_images, tmp_path)
    assert run.path.parent == tmp_path and (run.path / "curves.png").is_file()
    assert run.config.data.binarize == "dynamic" and run.config.model.n_hidden == 12
    rows = run.metrics("train")
    assert rows and all(row["split"] == "train" for row in rows) and "loss" in rows[-1]
    images = run.sample(5, seed=3)
    assert images.shape == (5, 1, 8, 8) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.equal(images, run.sample(5, seed=3)), "the same seed gives the same samples"
    model = genlab.load(run.path, device="cpu")
    assert isinstance(model, torch.nn.Module) and not model.training
    assert torch.equal(genlab.sample(model, 5, seed=3), images)

    resumed = genlab.resume(run.path, {"train.epochs": 2})
    assert resumed.path == run.path and resumed.metrics("train")[-1]["epoch"] == 2
    metrics = genlab.evaluate(run.path, device="cpu")
    assert metrics["model"] == "rbm" and np.isfinite(metrics["test_loglik_nats"])
    assert json.loads((run.path / "eval.json").read_text())["test_loglik_nats"] == metrics["test_loglik_nats"]


def test_in_memory_arrays_tensors_and_labelled_pairs_train_and_are_kept_once(tiny_images, tmp_path):
    arrays = np.load(tiny_images)
    images, labels = arrays["x_train"], arrays["y_train"]
    first = tiny_train(images, tmp_path / "a", overrides={"train.max_steps": 4})
    stored = sorted((tmp_path / "a" / ".data").iterdir())
    assert len(stored) == 1 and first.config.data.dataset == str(stored[0])
    tiny_train(images, tmp_path / "a", overrides={"train.max_steps": 4})
    assert sorted((tmp_path / "a" / ".data").iterdir()) == stored, "the same data is stored once"
    from_tensor = tiny_train(torch.from_numpy(images).float() / 255, tmp_path / "b",
                             overrides={"train.max_steps": 4})
    assert from_tensor.sample(2).shape == (2, 1, 8, 8)
    pair = tiny_train((images, labels), tmp_path / "c", overrides={"train.max_steps": 4})
    with np.load(pair.config.data.dataset) as kept:
        assert np.array_equal(kept["labels"], labels)


def test_text_given_as_a_str_trains_a_char_model(tmp_path):
    text = "to be or not to be, that is the question.\n" * 40
    run = genlab.train("char-lstm", dataset=text, epochs=1, out=tmp_path, device="cpu",
                       overrides={"model.layers": [16], "model.embedding_dim": 8, "data.seq_len": 16,
                                  "data.batch_size": 8, "train.progress": False, "train.max_steps": 3,
                                  "model.sample_length": 10, "model.eval_streams": 2})
    assert run.config.data.dataset.endswith(".txt")
    ids = run.sample(1, length=20)
    assert ids.shape == (1, 20) and set(run.model.config.vocab) <= set(text)


@pytest.mark.parametrize("dataset, message", [
    (np.zeros((10, 8, 8), dtype=np.int32), "integer images must be uint8"),
    (np.full((10, 8, 8), 3.0, dtype=np.float32), r"float pixel values must be in \[0, 1\]"),
    (np.zeros(10, dtype=np.uint8), "images must have shape"),
    (np.zeros((0, 8, 8), dtype=np.uint8), "contains no images"),
    ((np.zeros((10, 8, 8), dtype=np.uint8), np.zeros(9)), "9 labels for 10 images"),
    ([[0, 1]], "expected a numpy array or a torch tensor"),
])
def test_bad_in_memory_data_is_one_typed_error(dataset, message, tmp_path):
    with pytest.raises(DataError, match=message):
        tiny_train(dataset, tmp_path)


@pytest.mark.parametrize("call, error, message", [
    (lambda out: genlab.train("no-such-model", out=out), ConfigError, "unknown model 'no-such-model'"),
    (lambda out: genlab.train("rbm", preset="no-such-preset", out=out), ConfigError, "unknown preset"),
    (lambda out: genlab.train("rbm", preset="vae-mlp-mnist", out=out), ConfigError, "is for model vae"),
    (lambda out: genlab.train("rbm", overrides={"model.no_such_key": 1}, out=out), ConfigError,
     "unknown config key"),
    (lambda out: genlab.train("rbm", overrides={"model.n_hidden": "many"}, out=out), ConfigError, "n_hidden"),
    (lambda out: genlab.train("rbm", overrides="optim.lr=1", out=out), ConfigError, "wrap it in a list"),
    (lambda out: genlab.train("rbm", epochs=0, out=out), ConfigError, "train.epochs must be >= 1"),
    (lambda out: genlab.load(out / "nothing"), CheckpointError, "does not exist"),
])
def test_api_errors_are_raised_as_the_clis_typed_errors_never_exits(call, error, message, tmp_path):
    with pytest.raises(error, match=message) as caught:
        call(tmp_path)
    assert isinstance(caught.value, GenlabError)


@pytest.mark.parametrize("spelling, name", [("MNIST", "mnist"), ("fashion_mnist", "fashion-mnist"),
                                            ("Fashion-MNIST", "fashion-mnist"), ("FashionMNIST", "fashion-mnist"),
                                            ("tiny-shakespeare", "tinyshakespeare"),
                                            ("Tiny_Shakespeare", "tinyshakespeare")])
def test_dataset_names_in_any_case_and_with_dash_or_underscore(spelling, name):
    from genlab.data.datasets import dataset_kind

    model = "char-lstm" if name == "tinyshakespeare" else "rbm"
    assert compose_run_config(model, overrides={"data.dataset": spelling}).data.dataset == name
    assert dataset_kind(spelling) == ("text" if name == "tinyshakespeare" else "image")


def test_sample_writes_uint8_arrays_npz_and_npy_and_refuses_other_names(tiny_images, tmp_path, capsys):
    run = tiny_train(tiny_images, tmp_path)
    assert main(["sample", str(run.path), "--n", "6", "--out", str(tmp_path / "s.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "s.npz") as kept:
        assert kept["images"].dtype == np.uint8 and kept["images"].shape == (6, 8, 8)
        assert "labels" not in kept.files
        expected = (run.sample(6, seed=0)[:, 0] * 255).round().to(torch.uint8).numpy()
        assert np.array_equal(kept["images"], expected), "the same draws as a grid of the same seed"
    assert main(["sample", str(run.path), "--n", "6", "--out", str(tmp_path / "s.npy"), "--device", "cpu"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (6, 8, 8)
    assert main(["sample", str(run.path), "--out", str(tmp_path / "s.csv")]) == 2
    assert "name such a file" in capsys.readouterr().err


def test_conditional_samples_keep_their_labels(tmp_path, tiny_images):
    run = genlab.train("cgan", dataset=tiny_images, epochs=1, out=tmp_path, device="cpu",
                       overrides={"data.val_size": 64, "data.batch_size": 16, "train.max_steps": 2,
                                  "train.progress": False, "model.g_width": 4, "model.d_width": 4,
                                  "model.z_dim": 8, "train.num_samples": 16})
    assert main(["sample", str(run.path), "--n", "8", "--label", "2", "--out", str(tmp_path / "c.npz")]) == 0
    with np.load(tmp_path / "c.npz") as kept:
        assert kept["labels"].tolist() == [2] * 8 and kept["images"].shape[0] == 8
    assert main(["sample", str(run.path), "--n", "8", "--out", str(tmp_path / "all.npz")]) == 0
    with np.load(tmp_path / "all.npz") as kept:
        assert sorted(set(kept["labels"].tolist())) == list(range(run.model.config.num_classes))


def test_version_flag(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"genlab {genlab.__version__}"


def test_devices_resolve_or_give_one_typed_error():
    from genlab.device import resolve_device

    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="unknown device"):
        genlab.load("runs/anything", device="gpu0")


def test_latent_pictures_refuse_a_model_without_a_latent_space(tiny_images, tmp_path, capsys):
    run = tiny_train(tiny_images, tmp_path, overrides={"train.max_steps": 2})
    assert main(["latent", str(run.path), "--device", "cpu"]) == 2
    assert "latent pictures need a VAE" in capsys.readouterr().err
