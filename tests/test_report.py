"""The ablation report from run folders: the table's numbers, the paper's beside them, Figure 1's ratio."""

import json

import pytest

from alexnet.report import epochs_to_reach, find_runs, plot, table


def make_run(root, name, ablation, errors, val_curve, train_curve):
    run = root / name
    (run / "csv").mkdir(parents=True)
    top1, top5, top1_10, top5_10 = errors
    results = {
        "top1_err": top1,
        "top5_err": top5,
        "top1_err_10crop": top1_10,
        "top5_err_10crop": top5_10,
        "num_classes": 10,
        "epochs": len(val_curve),
        "steps": 10 * len(val_curve),
        "overrides": [f"ablation={ablation}"] if ablation else [],
    }
    (run / "results.json").write_text(json.dumps(results))
    rows = ["epoch,step,test/top1_err,test/top1_err_10crop,train/top1_err,val/top1_err"]
    for epoch, (v, t) in enumerate(zip(val_curve, train_curve, strict=True)):
        rows.append(f"{epoch},{10 * epoch + 9},,,,{v}")
        rows.append(f"{epoch},{10 * epoch + 9},,,{t},")
    last = len(val_curve) - 1  # the final evaluation (trainer.test) logs test/ keys at the last step
    rows.append(f"{last},{10 * last + 9},{top1},,,")
    rows.append(f"{last},{10 * last + 9},,{top1_10},,")
    (run / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def sweep(tmp_path):
    make_run(tmp_path, "ablation-baseline", "baseline", (0.40, 0.18, 0.38, 0.17), [0.8, 0.5, 0.4], [0.9, 0.3, 0.2])
    make_run(tmp_path, "ablation-no_lrn", "no_lrn", (0.42, 0.20, 0.395, 0.182), [0.8, 0.6, 0.42], [0.9, 0.4, 0.3])
    make_run(tmp_path, "ablation-tanh", "tanh", (0.50, 0.25, 0.49, 0.24), [0.9, 0.7, 0.5], [0.95, 0.6, 0.24])
    return tmp_path


def test_table_has_a_row_per_variant_with_differences_beside_the_papers(sweep):
    runs = find_runs([sweep])
    assert [r.variant for r in runs] == ["baseline", "no_lrn", "tanh"]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table(runs).splitlines()[2:]}
    assert rows["baseline"][1:5] == ["40.0", "18.0", "38.0", "17.0"]
    assert rows["no_lrn"][5:9] == ["+1.5", "+1.4", "+1.2", "+1.2"]  # ours (10 crops) vs the paper's, in points
    # The baseline's 1-crop against its 10-crop evaluation stands for "centre crop only" (footnote 5).
    assert rows["centre crop only"][5:9] == ["+2.0", "+1.5", "+1.0", "+1.3"]


def test_curves_hold_the_validation_epochs_and_not_the_final_test(sweep):
    baseline = find_runs([sweep])[0]
    assert baseline.val_top1 == {0: 0.8, 1: 0.5, 2: 0.4}
    assert baseline.train_top1 == {0: 0.9, 1: 0.3, 2: 0.2}


def test_figure_1_counts_the_epochs_to_25_percent_training_error(sweep, tmp_path):
    runs = {r.variant: r for r in find_runs([sweep])}
    assert epochs_to_reach(runs["baseline"].train_top1, 0.25) == 3
    assert epochs_to_reach(runs["tanh"].train_top1, 0.25) == 3
    assert epochs_to_reach(runs["tanh"].train_top1, 0.1) is None
    written = plot(list(runs.values()), tmp_path / "out")
    assert [p.name for p in written] == ["val_error.png", "figure1.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No results.json"):
        find_runs([tmp_path])
