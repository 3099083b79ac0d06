"""The command line as a user meets it: every bad argument is one line and exit code 2."""

import json
import subprocess
import sys

import pytest

from genlab.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("args,message", [
    (["train", "no-such-model"], "unknown model"),
    (["train", "rbm", "--set", "optim.lr"], "KEY=VALUE"),
    (["train", "rbm", "--set", "optim.lr=fast"], "optim.lr: expected a number"),
    (["train", "rbm", "--set", "model.n_hiden=5"], "unknown config key"),
    (["train", "rbm", "--set", "model.n_hidden=0"], "n_hidden"),
    (["train", "rbm", "--epochs", "0"], "positive integer"),
    (["train", "rbm", "--preset", "no-such-preset"], "unknown preset"),
    (["train", "rbm", "--dataset", "nowhere.xyz"], "unknown dataset"),
    (["train", "rbm", "--set", "train.device=tpu"], "train.device"),
    (["train"], "name a model"),
    (["sample", "/no/such/run"], "does not exist"),
    (["eval", "/no/such/run"], "does not exist"),
    (["plot", "/no/such/run"], "not found"),
    (["sample", "x", "--n", "-3"], "positive integer"),
    (["bench", "--suite", "huge"], "unknown suite"),
    (["bench", "--only", "nope"], "unknown benchmark"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_missing_dataset_lists_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run_cli(capsys, "train", "rbm", "--dataset", "fashion-mnist", "--set", "data.download=false",
                           "--out", str(tmp_path / "runs"))
    assert code == 2 and str(tmp_path / "empty") in err


def test_list_shows_models_and_presets(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "rbm" in out and "presets:" in out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "genlab", "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "rbm" in result.stdout


def test_train_sample_eval_plot_on_real_mnist(capsys, tmp_path, data_dir):
    code, out, err = run_cli(
        capsys, "train", "rbm", "--data-dir", str(data_dir), "--out", str(tmp_path), "--epochs", "1",
        "--set", "data.limit=3000", "--set", "data.val_size=500", "--set", "model.n_hidden=16",
        "--set", "model.sample_steps=50", "--set", "train.progress=false")
    assert code == 0, err
    run_dir = next(tmp_path.glob("rbm-mnist-*"))
    assert (run_dir / "samples" / "filters-step000000025.png").is_file()
    code, out, err = run_cli(capsys, "sample", str(run_dir), "--n", "16", "--steps", "20",
                             "--out", str(tmp_path / "grid.png"))
    assert code == 0 and (tmp_path / "grid.png").is_file(), err
    code, out, err = run_cli(capsys, "eval", str(run_dir), "--json", "--option", "ais_runs=20",
                             "--option", "ais_betas=500")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["model"] == "rbm" and metrics["test_loglik_nats"] < 0
    assert abs(metrics["log_z_exact"] - metrics["log_z_ais"]) < 1.0
    code, out, err = run_cli(capsys, "plot", str(run_dir))
    assert code == 0 and (run_dir / "curves.png").is_file()
