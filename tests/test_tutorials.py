"""The tutorials in docs/tutorials run, top to bottom, on small settings (GENLAB_TUTORIAL_QUICK=1), and are kept
in git without outputs."""

import time
from pathlib import Path

import nbformat
import pytest
from conftest import real_data_dir
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).parents[1] / "docs" / "tutorials").glob("*.ipynb"))


def test_there_are_the_three_tutorials():
    assert [p.stem for p in TUTORIALS] == ["01-quickstart", "02-vae-latent-space", "03-text-generation"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorials_are_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_on_small_settings(path, tmp_path, monkeypatch):
    data = real_data_dir()
    if data is None:
        pytest.skip("real datasets not found (set GENLAB_DATA)")
    monkeypatch.setenv("GENLAB_DATA", str(data))
    monkeypatch.setenv("GENLAB_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("GENLAB_TUTORIAL_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    assert any(p.is_dir() for p in (tmp_path / "runs").iterdir()), "the tutorial wrote its runs under OUT"
    print(f"{path.name}: {time.perf_counter() - started:.1f} s")
