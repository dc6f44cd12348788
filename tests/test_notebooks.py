"""The notebooks run top to bottom on a run's outputs, and are committed without outputs."""

from pathlib import Path

import nbformat
import pytest

from alexnet.training.train import train
from fast_run import FAST, ROOT

NOTEBOOKS = ROOT / "notebooks"
EXPECTED = {"results.ipynb", "figure3_kernels.ipynb", "figure4_neighbours.ipynb"}


def test_the_notebooks_are_committed_without_outputs():
    found = {path.name for path in NOTEBOOKS.glob("*.ipynb")}
    assert found == EXPECTED
    for name in found:
        book = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear its outputs"


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    nbformat.write(book, tmp_path / name)  # executed copies only: the committed files stay clean
    return book


def outputs(book: nbformat.NotebookNode, kind: str) -> list:
    found = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            if kind == "stdout" and output.get("name") == "stdout":
                found.append(output["text"])
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


@pytest.mark.slow
def test_the_notebooks_run_top_to_bottom_on_a_finished_run(compose, tmp_path, monkeypatch):
    cfg = compose(*FAST, "trainer.max_epochs=2", "ablation=tanh")
    results = train(cfg)
    run = tmp_path / "run"
    monkeypatch.setenv("ALEXNET_RUN", str(run))
    monkeypatch.setenv("ALEXNET_RUNS", str(run))

    report = execute("results.ipynb", tmp_path)
    (table,) = outputs(report, "text/markdown")
    assert f"| {100 * results['top1_err']:.1f} |" in table
    assert len(outputs(report, "image/png")) == 1  # val_error.png (figure1.png needs baseline and tanh)

    kernels = execute("figure3_kernels.ipynb", tmp_path)
    text = "".join(outputs(kernels, "stdout"))
    assert "column 1: 48 kernels of (3, 11, 11)" in text and "column 2: 48 kernels" in text
    assert len(outputs(kernels, "image/png")) == 1

    neighbours = execute("figure4_neighbours.ipynb", tmp_path)
    text = "".join(outputs(neighbours, "stdout"))
    assert "6 validation images, 35 training images searched" in text  # one per class; the unreadable one left out
    assert "neighbours of the same class as their query" in text
    assert len(outputs(neighbours, "image/png")) == 2
