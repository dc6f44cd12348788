"""The ablation report from run folders: the table's numbers, the paper's beside them, the epochs trained and
whether they are enough to compare, Figure 1's ratio, and plots that read without help."""

import json

import matplotlib
import pytest

from alexnet.reporting.report import (
    COMPARABLE_EPOCHS,
    PAPER_EPOCHS,
    epochs_to_reach,
    figure1_figure,
    find_runs,
    plot,
    report,
    table,
    val_error_figure,
)

matplotlib.use("Agg")


def make_run(root, name, ablation, errors, val_curve, train_curve, classes=10, **extra):
    run = root / name
    (run / "csv").mkdir(parents=True)
    top1, top5, top1_10, top5_10 = errors
    results = {
        "top1_err": top1,
        "top5_err": top5,
        "top1_err_10crop": top1_10,
        "top5_err_10crop": top5_10,
        "num_classes": classes,
        "epochs": len(val_curve),
        "steps": 10 * len(val_curve),
        "overrides": [f"ablation={ablation}"] if ablation else [],
        **extra,
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
    make_run(tmp_path, "ablation-tanh", "tanh", (0.50, 0.25, 0.49, 0.24), [0.9, 0.7, 0.5], [0.95, 0.6, 0.3])
    return tmp_path


def rows_of(markdown: str) -> dict[str, list[str]]:
    """The table's rows by variant, each a list of its cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")][1:]  # the header row left out
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def test_table_has_a_row_per_variant_with_differences_beside_the_papers(sweep):
    runs = find_runs([sweep])
    assert [r.variant for r in runs] == ["baseline", "no_lrn", "tanh"]
    rows = rows_of(table(runs))
    assert rows["baseline"][1:7] == ["3", "best on val", "40.0", "18.0", "38.0", "17.0"]  # epochs, network, errors
    assert rows["no_lrn"][7:11] == ["+1.5", "+1.4", "+1.2", "+1.2"]  # ours (10 crops) vs the paper's, in points
    # The baseline's 1-crop against its 10-crop evaluation stands for "centre crop only" (footnote 5).
    assert rows["centre crop only"][7:11] == ["+2.0", "+1.5", "+1.0", "+1.3"]


def test_every_column_says_its_crops_and_units(sweep):
    header = table(find_runs([sweep])).splitlines()[0]
    for column in ("epochs", "top-1 (%), 1 crop", "top-5 (%), 1 crop", "top-1 (%), 10 crops", "top-5 (%), 10 crops"):
        assert f"| {column} |" in header
    assert "top-1 vs baseline, 10 crops (points)" in header and "top-5 vs baseline, 10 crops (points)" in header


def test_a_short_sweep_says_its_epochs_and_that_it_cannot_be_compared_with_the_paper(sweep):
    text = report(find_runs([sweep]))
    assert f"Epochs trained: 3 in every run; the paper trained about {PAPER_EPOCHS}." in text
    assert "**Too short to compare with the paper.**" in text
    assert f"Every run trained 3 epochs, fewer than {COMPARABLE_EPOCHS}" in text
    assert "learned 10 classes, not ILSVRC-2012's 1000" in text
    assert "1 crop: the centre crop" in text and "10 crops: its four corners and centre" in text
    assert "the variant's 10-crop error minus the baseline's" in text
    assert "None" not in text


def test_a_full_length_sweep_on_1000_classes_is_compared_and_a_mixed_one_names_its_short_runs(tmp_path):
    long = [0.5] * PAPER_EPOCHS
    make_run(tmp_path / "a", "baseline", "baseline", (0.41, 0.19, 0.40, 0.18), long, long, classes=1000)
    make_run(tmp_path / "a", "no_lrn", "no_lrn", (0.43, 0.20, 0.42, 0.19), long, long, classes=1000)
    text = report(find_runs([tmp_path / "a"]))
    assert "Too short" not in text
    assert f"Every run trained at least {COMPARABLE_EPOCHS} epochs on 1000 classes" in text
    make_run(tmp_path / "b", "baseline", "baseline", (0.41, 0.19, 0.40, 0.18), long, long, classes=1000)
    make_run(tmp_path / "b", "no_lrn", "no_lrn", (0.43, 0.20, 0.42, 0.19), [0.5] * 30, [0.5] * 30, classes=1000)
    text = report(find_runs([tmp_path / "b"]))
    assert f"Epochs trained: 30 to {PAPER_EPOCHS} (the epochs column gives each run's)" in text
    assert f"Some runs trained 30 epochs, fewer than {COMPARABLE_EPOCHS}" in text
    assert "classes, not" not in text
    assert [rows_of(text)[v][1] for v in ("baseline", "no_lrn")] == [str(PAPER_EPOCHS), "30"]


def test_the_final_network_heads_the_row_and_the_best_epoch_comes_from_best_on_val(tmp_path):
    best = {"epoch": 1, "checkpoint": "best.ckpt", "selected_on": "val/top1_err"}
    best |= {"top1_err": 0.35, "top5_err": 0.15, "top1_err_10crop": 0.34, "top5_err_10crop": 0.14}
    curve = [0.8, 0.35, 0.4]
    make_run(tmp_path, "baseline", "baseline", (0.40, 0.18, 0.38, 0.17), curve, curve, best_on_val=best)
    legacy = {"checkpoint": "logs/x/checkpoints/best-epoch002-top1err0.3900.ckpt"}  # before best_on_val existed
    make_run(tmp_path, "tanh", "tanh", (0.50, 0.25, 0.49, 0.24), curve, curve, **legacy)
    lines = table(find_runs([tmp_path])).splitlines()
    cells = {line.count("|") for line in lines if line.startswith("|")}
    assert len(cells) == 1, lines[:3]  # the header, the rule and every row have the same columns
    rows = rows_of(table(find_runs([tmp_path])))
    assert rows["baseline"][2:7] == ["final", "40.0", "18.0", "38.0", "17.0"]
    assert rows["baseline"][-1] == "epoch 2: 34.0 / 14.0"  # counted from 1, 10 crops
    assert rows["tanh"][2] == "best on val (epoch 3)" and rows["tanh"][-1] == ""


def test_curves_hold_the_validation_epochs_and_not_the_final_test(sweep):
    baseline = find_runs([sweep])[0]
    assert baseline.val_top1 == {0: 0.8, 1: 0.5, 2: 0.4}
    assert baseline.train_top1 == {0: 0.9, 1: 0.3, 2: 0.2}


def test_figure_1_counts_the_epochs_to_25_percent_training_error(sweep, tmp_path):
    runs = {r.variant: r for r in find_runs([sweep])}
    assert epochs_to_reach(runs["baseline"].train_top1, 0.25) == 3
    assert epochs_to_reach(runs["tanh"].train_top1, 0.25) is None
    assert epochs_to_reach(runs["tanh"].train_top1, 0.6) == 2
    written = plot(list(runs.values()), tmp_path / "out")
    assert [p.name for p in written] == ["val_error.png", "figure1.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def tick_labels(ax) -> list[str]:
    """The epoch labels under `ax`, as drawn (its figure drawn once before: a draw lays out every panel)."""
    return [t.get_text().replace("\N{MINUS SIGN}", "-") for t in ax.get_xticklabels() if t.get_text()]


def assert_reads_without_help(fig, epochs: int) -> None:
    """Units on every axis that shows numbers, the epochs covered in the title, integer epoch ticks, no None."""
    titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    assert any(f"epochs 1-{epochs}" in t for t in titles), titles
    assert not any("None" in t for t in titles), titles
    fig.canvas.draw()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    labels = {label for ax in shown for label in tick_labels(ax)}  # panels above another share its labels
    assert labels and all(float(label).is_integer() for label in labels), labels
    assert all(ax.get_ylabel() == "" or "(%" in ax.get_ylabel() for ax in shown)
    assert all("(%" in ax.get_ylabel() for ax in fig.axes if ax.get_visible() and ax.get_subplotspec().is_first_col())


def test_the_validation_plot_gives_every_variant_its_own_line_and_panel(tmp_path):
    names = ["baseline"] + [f"variant{i:02d}" for i in range(21)]  # more than tab20's 18 non-grey colours
    for name in names:
        make_run(tmp_path, name, name, (0.4, 0.2, 0.4, 0.2), [0.9, 0.6, 0.5, 0.45], [0.9, 0.5, 0.3, 0.2])
    runs = find_runs([tmp_path])
    fig = val_error_figure(runs)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines() if line.get_label() in names}
    assert sorted(lines) == sorted(names)
    looks = {(matplotlib.colors.to_hex(line.get_color()), line.get_linestyle()) for line in lines.values()}
    assert len(looks) == len(names)  # no two variants drawn alike
    assert "1 crop per image" in fig.get_suptitle() and "the baseline in grey" in fig.get_suptitle()
    assert_reads_without_help(fig, 4)
    assert sum(ax.get_visible() for ax in fig.axes) == len(names)
    # Epochs count from 1, and every other panel draws the baseline's own curve in grey behind its variant.
    assert all(list(line.get_xdata()) == [1, 2, 3, 4] for ax in fig.axes for line in ax.get_lines())
    baseline = list(lines["baseline"].get_ydata())
    greys = [ax.get_lines()[0] for ax in fig.axes if ax.get_visible() and ax.get_lines()[0] is not lines["baseline"]]
    assert len(greys) == len(names) - 1 and all(list(g.get_ydata()) == baseline for g in greys)
    matplotlib.pyplot.close(fig)


def test_the_twelve_ablations_have_twelve_colours(tmp_path):
    names = ["baseline", "lrn_code", "no_conv3", "no_conv4", "no_conv5", "no_crops_flips", "no_dropout", "no_lrn"]
    names += ["no_overlap_pool", "no_pca_lighting", "one_column", "tanh"]
    for name in names:
        make_run(tmp_path, name, name, (0.4, 0.2, 0.4, 0.2), [0.9, 0.6], [0.9, 0.5])
    fig = val_error_figure(find_runs([tmp_path]))
    colours = [matplotlib.colors.to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()]
    variant_colours = colours[:1] + colours[2::2]  # after the baseline's panel, each panel draws the grey first
    assert len(set(variant_colours)) == 12 and "#b3b3b3" not in variant_colours
    matplotlib.pyplot.close(fig)


def test_figure_1_says_not_reached_instead_of_none(sweep):
    fig = figure1_figure(find_runs([sweep]))
    (ax,) = fig.axes
    assert "25% reached: ReLU epoch 3, tanh not reached in 3 epochs" in ax.get_title()
    assert ax.get_ylabel().startswith("training top-1 error (%")
    assert_reads_without_help(fig, 3)
    matplotlib.pyplot.close(fig)


def test_figure_1_gives_the_ratio_when_both_reach_25_percent(tmp_path):
    make_run(tmp_path, "baseline", "baseline", (0.4, 0.2, 0.4, 0.2), [0.5] * 4, [0.9, 0.2, 0.1, 0.1])
    make_run(tmp_path, "tanh", "tanh", (0.4, 0.2, 0.4, 0.2), [0.5] * 4, [0.9, 0.8, 0.5, 0.2])
    fig = figure1_figure(find_runs([tmp_path]))
    assert "ReLU epoch 2, tanh epoch 4; tanh / ReLU: 2.0x" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)
    assert figure1_figure(find_runs([tmp_path / "baseline"])) is None  # without tanh there is no Figure 1


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No results.json"):
        find_runs([tmp_path])
