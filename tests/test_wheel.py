"""The built wheel works on its own, without the source tree.

The test builds genlab's wheel, checks what it holds (every bundled preset, the studio's static files, no tests),
installs it with torch into a fresh virtual environment that cannot see the system site-packages, and then,
from a directory outside the source tree with PYTHONPATH unset, shows that:

* ``import genlab`` (and torch) resolve to the venv's site-packages, not to /work/main/src;
* ``genlab list`` finds every preset in ``configs/*.yaml`` (rbm-quick among them), so the YAML files were packaged;
* the studio's ``static/`` files (index.html, app.js, style.css) are inside the installed package, byte for byte;
* a one-epoch ``genlab train rbm --preset rbm-quick`` on a slice of MNIST exits 0 and writes config.yaml,
  metrics.jsonl and a checkpoint.

The wheel is built from a clean copy of the project files (pyproject.toml, README.md, src/) rather than in place:
setuptools reuses an existing ``build/lib`` and would put whatever stale modules lie there into the wheel, and a
build in place would also write into the tree another person is working in.

It skips when the real data is absent, or when torch==2.13.0 and the other dependencies cannot be installed (no
package index reachable), so the suite stays green offline. About a minute on 2 CPU cores, most of it installing
torch.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = REPO / "src" / "genlab"
STATIC_FILES = ("index.html", "app.js", "style.css")
TORCH = "torch==2.13.0"
PROBE = """
import importlib.resources, json, sys
import genlab, torch
static = importlib.resources.files("genlab") / "studio" / "static"
print(json.dumps({"genlab": genlab.__file__, "torch": torch.__file__, "torch_version": torch.__version__,
                  "static": {name: str(static / name) for name in sys.argv[1:]}}))
"""


def _run(args, *, timeout, cwd, env=None):
    return subprocess.run([str(a) for a in args], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _show(result) -> str:
    return (f"command: {' '.join(result.args)}\nexit code: {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}")


def _clean_copy(dest: Path) -> Path:
    """The files a wheel build reads, without build/, *.egg-info or caches."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "LICENSE", "LICENSE.txt"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def _dependencies(wheel: Path) -> list[str]:
    """The wheel's own runtime requirements (Requires-Dist without an extra), with torch pinned to TORCH."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    declared = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    runtime = [req for req in declared if "extra ==" not in req]
    return [TORCH] + [req for req in runtime if not req.lower().startswith("torch")]


def _venv_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE"}}
    # bytecode is written (into the temporary venv only), so the second command does not recompile torch
    env["GENLAB_DATA"] = str(data_dir)
    env["PYTHONNOUSERSITE"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def test_wheel_installs_and_runs_without_the_source_tree(tmp_path, data_dir):
    assert not tmp_path.resolve().is_relative_to(REPO), f"{tmp_path} must lie outside the source tree"
    timings: dict[str, float] = {}

    def timed(step, args, *, timeout, env=None):
        start = time.perf_counter()
        result = _run(args, timeout=timeout, cwd=tmp_path, env=env)
        timings[step] = round(time.perf_counter() - start, 1)
        return result

    # (a) build the wheel, no dependencies
    project = _clean_copy(tmp_path / "project")
    dist = tmp_path / "dist"
    built = timed("build", [sys.executable, "-m", "pip", "wheel", project, "--no-deps", "-w", dist], timeout=300)
    output = built.stdout + built.stderr
    if built.returncode != 0 and "setuptools" in output and (
            "No matching distribution" in output or "Could not find a version" in output):
        pytest.skip(f"cannot get setuptools to build the wheel (no package index?)\n{_show(built)}")
    assert built.returncode == 0, _show(built)
    wheels = sorted(dist.glob("genlab-*.whl"))
    assert len(wheels) == 1, f"expected one genlab wheel in {dist}, found {wheels}\n{_show(built)}"
    wheel = wheels[0]

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    presets = sorted(p.stem for p in (SOURCE_PACKAGE / "configs").glob("*.yaml"))
    assert "rbm-quick" in presets
    missing = [f"genlab/configs/{p}.yaml" for p in presets if f"genlab/configs/{p}.yaml" not in names]
    missing += [f"genlab/studio/static/{f}" for f in STATIC_FILES if f"genlab/studio/static/{f}" not in names]
    assert not missing, f"the wheel lacks {missing}"
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"genlab", wheel.name.split("-py")[0] + ".dist-info"}, sorted(top_level)
    assert not [n for n in names if "/tests/" in n or n.split("/")[-1].startswith("test_")], "tests in the wheel"

    # (b) a fresh venv that cannot see the system site-packages
    venv = tmp_path / "venv"
    made = timed("venv", [sys.executable, "-m", "venv", str(venv)], timeout=180)
    assert made.returncode == 0, _show(made)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python, genlab = venv / "bin" / "python", venv / "bin" / "genlab"
    env = _venv_env(data_dir)

    # (c) torch and the other dependencies (needs an index: skip without one), then the wheel alone (no index)
    pip = [python, "-m", "pip", "install", "--no-compile", "--disable-pip-version-check"]
    deps = timed("install torch + dependencies", pip + _dependencies(wheel), timeout=480, env=env)
    if deps.returncode != 0:
        pytest.skip(f"cannot install {TORCH} and genlab's dependencies (no package index?)\n{_show(deps)}")
    installed = timed("install wheel", pip + ["--no-index", wheel], timeout=180, env=env)
    assert installed.returncode == 0, _show(installed)
    assert genlab.is_file(), f"no console script {genlab}\n{_show(installed)}"

    # (d) + (e) everything from tmp_path, outside the source tree, PYTHONPATH unset
    probe = timed("probe", [python, "-c", PROBE, *STATIC_FILES], timeout=180, env=env)
    assert probe.returncode == 0, _show(probe)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    venv_root, src_root = venv.resolve(), (REPO / "src").resolve()
    for what in ("genlab", "torch"):
        where = Path(found[what]).resolve()
        assert where.is_relative_to(venv_root) and "site-packages" in where.parts, \
            f"`import {what}` resolved to {where}, not into {venv_root}\n{_show(probe)}"
        assert not where.is_relative_to(src_root), f"`import {what}` came from the source tree: {where}"
    assert found["torch_version"].startswith("2.13.0"), found
    for name, path in found["static"].items():
        where = Path(path).resolve()
        assert where.is_file(), f"studio file {name} not installed: {where}"
        assert where.is_relative_to(venv_root) and not where.is_relative_to(src_root), where
        assert filecmp.cmp(where, SOURCE_PACKAGE / "studio" / "static" / name, shallow=False), \
            f"installed {name} differs from the source"

    listed = timed("genlab list", [genlab, "list"], timeout=180, env=env)
    assert listed.returncode == 0, _show(listed)
    assert "presets:" in listed.stdout, _show(listed)
    listed_names = set(listed.stdout.split())
    absent = [p for p in presets if p not in listed_names]
    assert not absent, f"`genlab list` does not show the presets {absent}\n{_show(listed)}"

    runs = tmp_path / "runs"
    trained = timed("genlab train (1 epoch)", [
        genlab, "train", "rbm", "--preset", "rbm-quick", "--epochs", "1", "--device", "cpu", "--out", runs,
        "--set", "data.limit=2000", "--set", "data.val_size=200", "--set", "data.download=false",
        "--set", "train.progress=false"], timeout=300, env=env)
    assert trained.returncode == 0, _show(trained)
    run_dirs = [d for d in runs.iterdir() if d.is_dir()] if runs.is_dir() else []
    assert len(run_dirs) == 1, f"expected one run directory in {runs}, found {run_dirs}\n{_show(trained)}"
    run = run_dirs[0]
    contents = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert (run / "config.yaml").is_file(), contents
    assert (run / "metrics.jsonl").is_file(), contents
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert any(m.get("epoch") == 1 for m in metrics), f"no epoch-1 metrics in {run}: {metrics[-3:]}"
    checkpoints = sorted(run.glob("checkpoints/*/model.safetensors"))
    assert checkpoints, f"no checkpoint in {run}: {contents}\n{_show(trained)}"

    print("wheel test timings (s):", timings, "total", round(sum(timings.values()), 1))
