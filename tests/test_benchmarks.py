"""The benchmarks run and print their tables (tiny sizes, CPU): gpu.sh depends on them on machines where
nobody can debug them. What they measure is not asserted here: speed is never a unit test's business."""

from pathlib import Path

import pytest

from fast_run import ROOT, run_script


def run_benchmark(name: str, *args: str, cwd: Path) -> str:
    done = run_script(ROOT / "benchmarks" / name, *args, cwd=cwd, PYTHONPATH=str(ROOT / "benchmarks"))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_model_step_benchmark_prints_every_variant_and_precision(tmp_path):
    out = run_benchmark("model_step.py", "--batch-size", "4", "--steps", "1", "--num-classes", "10", cwd=tmp_path)
    assert out.count("| paper net, this LRN (grouped)") == 2  # fp32 and bf16
    assert "fp32: grouped / naive split:" in out and "paper net bf16 / fp32:" in out


@pytest.mark.slow
def test_conv_halves_benchmark_prints_every_convolution(tmp_path):
    out = run_benchmark("conv_halves.py", "--batch-size", "2", "--steps", "1", cwd=tmp_path)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        assert f"| {layer} |" in out


@pytest.mark.slow
def test_lightning_overhead_benchmark_prints_the_ratio(tmp_path):
    out = run_benchmark("lightning_overhead.py", "--batch-size", "4", "--steps", "4", "--rounds", "1", cwd=tmp_path)
    assert "Lightning / plain step time:" in out


@pytest.mark.slow
@pytest.mark.parametrize("store_format", ["raw", "jpeg"])
def test_end_to_end_benchmark_names_its_bound_and_projects_90_epochs(tmp_path, store_format):
    args = ["--images", "64", "--batch-size", "8", "--steps", "2", "--warmup", "1", "--workers", "1"]
    out = run_benchmark("end_to_end.py", *args, "--store-format", store_format, cwd=tmp_path)
    assert f"store={store_format}" in out and "| end to end (Trainer.fit on the datamodule) |" in out
    assert "bound by the" in out and "90 epochs of ILSVRC-2012" in out and "peak host memory" in out


@pytest.mark.slow
def test_loader_benchmark_compares_against_torchvision_and_reports_sizes(sample_root, tmp_path):
    args = ["--root", str(sample_root), "--store", str(tmp_path / "store"), "--limit", "16", "--rounds", "1"]
    out = run_benchmark("loader.py", *args, "--batch-size", "8", cwd=tmp_path)
    assert "(b) / (a) =" in out and "| (c) JPEG store" in out and "bytes per image: raw 196,608" in out


@pytest.mark.slow
def test_scale_benchmark_builds_the_official_files_and_reports_every_cost(tmp_path):
    """10 classes and 0.02% of ILSVRC's files (256 training, 10 validation), train.py started on the store."""
    args = ["--classes", "10", "--scales", "0.0002", "--memory-images", "16", "--book-chunks", "30"]
    out = run_benchmark("scale.py", *args, "--work-dir", str(tmp_path / "work"), cwd=tmp_path)
    assert "| 0.0002 (266 files) |" in out
    for row in ("preparation, images/s", "worker peak private, statistics", "bookkeeping per chunk, last 10%"):
        assert f"| {row}" in out or f"|   {row}" in out, row
    for row in ("manifest.json, KB", "Store.open, ms", "verify peak RSS, MiB", "train.py start to first training step"):
        assert f"| {row}" in out, row
    assert "| worker private, statistics, MiB |" in out and "before: rewrite progress.json" in out


@pytest.mark.slow
def test_figure1_epoch_benchmark_prints_the_ratio_and_both_curves(tmp_path):
    from cifar_files import write_python_release

    root = write_python_release(tmp_path / "data", per_batch=40)
    args = ["--root", str(root), "--store", str(tmp_path / "store"), "--rounds", "1", "--curve", "2"]
    out = run_benchmark("figure1_epoch.py", *args, cwd=tmp_path)
    assert "project / plain images/s:" in out and "| 2 |" in out
    difference = float(out.split("largest difference: ")[1].split()[0])
    assert difference == 0.0  # the same batches, weights and arithmetic: the same curve
    assert "| project (ClassifierModule + Trainer) |" in run_benchmark(
        "figure1_epoch.py", "--synthetic", "--rounds", "1", "--limit", "256", cwd=tmp_path
    )
