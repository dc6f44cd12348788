"""The ablation report: our error rates beside the paper's, from the runs' own files (results.json and the
CSV log), with no network and no wandb server."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.training.results import ERRORS, FILENAME, read_results
from alexnet.training.rundir import PREVIOUS

# Section 5: "roughly 90 cycles through the training set" of ILSVRC-2012's 1000 classes.
PAPER_EPOCHS = 90
PAPER_CLASSES = 1000
# Table 2, ILSVRC-2012 validation set, one CNN (the paper tests with 10 crops, Section 4.1): top-1, top-5 in %.
PAPER_ERRORS = (40.7, 18.2)
# A run shorter than this is too short to set beside the paper's differences. The paper divides the learning
# rate by 10 three times before stopping; spaced evenly over its 90 epochs, the last drop comes at three
# quarters of training (epoch 68), and the paper's numbers are those of a network that then trained at the
# smallest rate. Before that the error still falls by more per few epochs than the 0.4 to 2 points being
# compared, so a difference between two short runs measures where each happened to be, not the feature.
COMPARABLE_EPOCHS = math.ceil(0.75 * PAPER_EPOCHS)

# docs/paper.md, "What each feature is worth": how much the error rises (top-1, top-5, in points)
# when the feature is taken away. None where the paper gives no number.
PAPER_DELTA: dict[str, tuple[float | None, float | None, str]] = {
    "baseline": (0.0, 0.0, ""),
    "tanh": (None, None, "Figure 1: ReLU reaches 25% training error 6x faster (CIFAR-10)"),
    "one_column": (1.7, 1.2, "Section 3.2"),
    "no_lrn": (1.4, 1.2, "Section 3.3"),
    "lrn_code": (None, None, "not in the paper: the authors' code convention"),
    "no_overlap_pool": (0.4, 0.3, "Section 3.4"),
    "no_crops_flips": (None, None, "Section 4.1: 'substantial overfitting'"),
    "no_pca_lighting": (1.0, None, "Section 4.1: 'over 1%' top-1"),
    "no_dropout": (None, None, "Section 4.2: 'substantial overfitting'"),
    "no_conv3": (2.0, None, "Section 7: 'about 2%' top-1"),
    "no_conv4": (2.0, None, "Section 7: 'about 2%' top-1"),
    "no_conv5": (2.0, None, "Section 7: 'about 2%' top-1"),
    "centre crop only": (1.5, 1.3, "footnote 5, ILSVRC-2010: 37.5/17.0 with 10 crops, 39.0/18.3 without"),
}


@dataclass
class Run:
    variant: str
    directory: Path
    results: dict
    val_top1: dict[int, float] = field(default_factory=dict)  # epoch (from 0) -> error
    train_top1: dict[int, float] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        """Epochs trained (results.json), else the epochs the log holds."""
        return int(self.results.get("epochs") or len(self.val_top1))

    @property
    def val_crops(self) -> int:
        """Crops per image of the per-epoch validation (data.val_crops: 1 unless the run set 10)."""
        for override in self.results.get("overrides", []):
            key, _, value = override.partition("=")
            if key.lstrip("+") == "data.val_crops":
                return int(value)
        return 1


def variant_of(results: dict, directory: Path) -> str:
    for override in results.get("overrides", []):
        key, _, value = override.partition("=")
        if key.lstrip("+") == "ablation":
            return value
    return "baseline" if directory.name == "baseline" else directory.name


def _curves(directory: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Per-epoch validation and training top-1 error from the CSV log (the final evaluation logs test/... keys,
    not validation points)."""
    log = directory / "csv" / "metrics.csv"
    val: dict[int, float] = {}
    train: dict[int, float] = {}
    if not log.is_file():
        return val, train
    with log.open() as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            if row.get("val/top1_err"):
                val[epoch] = float(row["val/top1_err"])
            if row.get("train/top1_err"):
                train[epoch] = float(row["train/top1_err"])
    return val, train


def find_runs(directories: list[str | Path]) -> list[Run]:
    runs = []
    for directory in directories:
        for path in sorted(Path(directory).rglob(FILENAME)):
            if PREVIOUS in path.relative_to(directory).parts:  # earlier runs a rerun set aside
                continue
            results = read_results(path)
            if not all(key in results for key in ERRORS):
                continue
            val, train = _curves(path.parent)
            runs.append(Run(variant_of(results, path.parent), path.parent, results, val, train))
    if not runs:
        raise FileNotFoundError(f"No {FILENAME} under {[str(d) for d in directories]}: give the run or sweep folders.")
    return runs


def _points(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}"


def evaluated(results: dict) -> str:
    """Which network the ERRORS numbers are of. results.json names the final network and keeps the best
    validation epoch under best_on_val; one written before that held the best epoch's numbers instead (its
    checkpoint is named best-epochNNN-..., NNN from 0)."""
    if "best_on_val" in results or "network" in results:
        return "final"
    found = re.search(r"best-epoch(\d+)", str(results.get("checkpoint") or ""))
    return f"best on val (epoch {int(found[1]) + 1})" if found else "best on val"


def _best_on_val(results: dict) -> str:
    best = results.get("best_on_val")
    if not best:
        return ""
    return f"epoch {int(best['epoch']) + 1}: {100 * best[ERRORS[2]]:.1f} / {100 * best[ERRORS[3]]:.1f}"


def table(runs: list[Run]) -> str:
    """The markdown table: errors in %, each variant's difference from the baseline beside the paper's, in points;
    the columns say which network and how many crops."""
    base = next((r for r in runs if r.variant == "baseline"), None)
    best = any(r.results.get("best_on_val") for r in runs)
    header = (
        "| variant | epochs | network | top-1 (%), 1 crop | top-5 (%), 1 crop | top-1 (%), 10 crops | "
        "top-5 (%), 10 crops | top-1 vs baseline, 10 crops (points) | paper | top-5 vs baseline, 10 crops "
        "(points) | paper | paper's source |"
    )
    rule = "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    if best:
        header += " best on val: epoch, top-1 / top-5 (%), 10 crops |"
        rule += "---|"
    lines = [header, rule]
    rows = [(r.variant, r, False) for r in runs]  # (variant, run, the centre crop row)
    if base is not None:  # centre crop only vs 10 crops, from the baseline's own two evaluations
        rows.append(("centre crop only", base, True))
    top1, top5, top1_10, top5_10 = ERRORS
    for variant, run, centre_crop in rows:
        paper1, paper5, source = PAPER_DELTA.get(variant, (None, None, ""))
        if centre_crop:
            r = run.results
            d1, d5 = 100 * (r[top1] - r[top1_10]), 100 * (r[top5] - r[top5_10])
            epochs, extra = run.epochs, " |" if best else ""
        else:
            r = run.results
            d1 = 100 * (r[top1_10] - base.results[top1_10]) if base else None
            d5 = 100 * (r[top5_10] - base.results[top5_10]) if base else None
            epochs, extra = run.epochs, f" {_best_on_val(r)} |" if best else ""
        cells = f"{epochs} | {evaluated(r)} | " + " | ".join(f"{100 * r[key]:.1f}" for key in ERRORS)
        deltas = " | ".join(_points(d) for d in (d1, paper1, d5, paper5))
        lines.append(f"| {variant} | {cells} | {deltas} | {source} |{extra}")
    return "\n".join(lines)


def too_short(runs: list[Run]) -> list[str]:
    """Why these runs cannot be set beside the paper's numbers: each reason a sentence; none when they can."""
    reasons = []
    short = sorted({r.epochs for r in runs if r.epochs < COMPARABLE_EPOCHS})
    if short:
        which = "every run" if all(r.epochs < COMPARABLE_EPOCHS for r in runs) else "some runs"
        reasons.append(
            f"{which} trained {_span(short)} epochs, fewer than {COMPARABLE_EPOCHS}: three quarters of the paper's "
            f"{PAPER_EPOCHS}, where its last learning-rate drop comes if its three are spaced evenly"
        )
    classes = sorted({c for r in runs if (c := r.results.get("num_classes")) is not None} - {PAPER_CLASSES})
    if classes:
        reasons.append(
            f"the runs learned {_span(classes)} classes, not ILSVRC-2012's {PAPER_CLASSES}: another dataset, "
            "where the paper's features need not matter at all"
        )
    return reasons


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def report(runs: list[Run]) -> str:
    """report.md: the epochs trained, whether the sweep can be compared with the paper, the table, and what
    each column holds."""
    epochs = sorted({r.epochs for r in runs})
    every = "in every run" if len(epochs) == 1 else "(the epochs column gives each run's)"
    reasons = too_short(runs)
    if reasons:
        verdict = (
            "**Too short to compare with the paper.** "
            + " ".join(f"{reason[0].upper()}{reason[1:]}." for reason in reasons)
            + " The differences below, whatever their sign or size, say nothing about the paper's effects: they "
            "show that each variant trains and is evaluated through the same pipeline."
        )
    else:
        verdict = (
            f"Every run trained at least {COMPARABLE_EPOCHS} epochs on {PAPER_CLASSES} classes: the differences can "
            "be set beside the paper's (one run each: how much they vary from run to run is not measured)."
        )
    notes = [
        "Errors are the % of validation images misclassified: top-1, the most probable class is wrong; top-5, the "
        "true class is not among the five most probable.",
        "1 crop: the centre crop of each image; 10 crops: its four corners and centre and their mirror images, "
        "the softmax averaged (Section 4.1, the paper's test).",
        "network: final is the network at the end of training. Best on val is the epoch with the lowest "
        "validation top-1 error, chosen on the very images it is scored on (optimistic); results.json files "
        "written before `best_on_val` existed hold that epoch's numbers. Epochs are counted from 1.",
        "vs baseline: the variant's 10-crop error minus the baseline's, in percentage points (positive: worse). "
        "paper: the paper's rise in error when the feature is taken away, on ILSVRC-2012 after about "
        f"{PAPER_EPOCHS} epochs (it does not say with how many crops). centre crop only: the baseline's 1-crop "
        "error minus its own 10-crop error.",
        f"The paper's own network (one CNN, Table 2, ILSVRC-2012 validation): {PAPER_ERRORS[0]}% top-1, "
        f"{PAPER_ERRORS[1]}% top-5.",
    ]
    return "\n\n".join(
        [
            "# The ablations beside the paper",
            f"Epochs trained: {_span(epochs)} {every}; the paper trained about {PAPER_EPOCHS}.",
            verdict,
            table(runs),
            "\n".join(f"- {note}" for note in notes),
        ]
    )


def epochs_to_reach(curve: dict[int, float], level: float) -> int | None:
    """The first epoch (counted from 1) whose training error is at or below `level`."""
    return next((epoch + 1 for epoch in sorted(curve) if curve[epoch] <= level), None)


def line_styles(variants: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, line style) per variant, no two alike: the baseline black, the others tab20's 18 colours that are
    not grey (its dark shades first), then the same colours dashed, then dotted."""
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"]  # called with an int: that colour of its list
    palette = [matplotlib.colors.to_hex(tab20(i)) for i in [*range(0, 20, 2), *range(1, 20, 2)] if i not in (14, 15)]
    others = [v for v in variants if v != "baseline"]
    styles = {"baseline": ("#000000", "-")}
    for i, variant in enumerate(others):
        styles[variant] = (palette[i % len(palette)], ("-", "--", ":")[i // len(palette) % 3])
    return {v: styles[v] for v in variants}


def _epoch_axis(ax, last: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _span_of(curves: list[dict[int, float]]) -> tuple[int, int]:
    """The first and last epoch (from 1) that any of the curves holds."""
    epochs = [e + 1 for curve in curves for e in curve]
    return (min(epochs), max(epochs)) if epochs else (1, 1)


def val_error_figure(runs: list[Run]):
    """Small multiples: one panel per variant, its validation top-1 error (%) per epoch in its own colour, the
    baseline's in grey behind it; the panels share both axes."""
    import matplotlib.pyplot as plt

    base = next((r for r in runs if r.variant == "baseline"), None)
    first, last = _span_of([r.val_top1 for r in runs])
    crops = sorted({r.val_crops for r in runs})
    crop_words = " or ".join(f"{c} crop{'s' if c > 1 else ''}" for c in crops)
    columns = min(4, len(runs))
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.0 * columns, 2.3 * rows + 0.9), sharex=True, sharey=True, squeeze=False
    )
    styles = line_styles([r.variant for r in runs])
    for ax, run in zip(axes.flat, runs, strict=False):
        if base is not None and run is not base:
            epochs = sorted(base.val_top1)
            ax.plot([e + 1 for e in epochs], [100 * base.val_top1[e] for e in epochs], color="0.7", lw=1.2)
        epochs = sorted(run.val_top1)
        colour, style = styles[run.variant]
        ax.plot(
            [e + 1 for e in epochs],
            [100 * run.val_top1[e] for e in epochs],
            color=colour,
            linestyle=style,
            marker="o",
            markersize=3,
            lw=1.8,
            label=run.variant,
        )
        end = f"{100 * run.val_top1[epochs[-1]]:.0f}% at epoch {epochs[-1] + 1}" if epochs else "no per-epoch log"
        ax.set_title(f"{run.variant}: {end}", fontsize=9)
        ax.grid(alpha=0.3)
        _epoch_axis(ax, last)
    for ax in axes.flat[len(runs) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 error (%)")
    for ax in axes.flat[len(runs) - columns : len(runs)]:  # the lowest visible panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylim(bottom=0)
    reference = "; the baseline in grey in every panel" if base is not None else ""
    fig.suptitle(
        f"Validation top-1 error (%, {crop_words} per image), epochs {first}-{last}: one panel per variant{reference}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def figure1_figure(runs: list[Run], level: float = 0.25):
    """Figure 1: training top-1 error (%) per epoch of ReLU (the baseline) and tanh, with the 25% line; None
    without both runs."""
    import matplotlib.pyplot as plt

    pair = {r.variant: r for r in runs if r.variant in ("baseline", "tanh")}
    if len(pair) < 2:
        return None
    first, last = _span_of([pair["baseline"].train_top1, pair["tanh"].train_top1])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    reached = {}
    for variant, style, label in (("baseline", "-", "ReLU (baseline)"), ("tanh", "--", "tanh")):
        curve = pair[variant].train_top1
        epochs = sorted(curve)
        ax.plot([e + 1 for e in epochs], [100 * curve[e] for e in epochs], style, marker="o", markersize=3, label=label)
        reached[variant] = epochs_to_reach(curve, level)
    percent = f"{100 * level:.0f}%"
    ax.axhline(100 * level, color="gray", linewidth=0.8, label=f"{percent} (Figure 1's level)")

    def when(variant: str) -> str:
        epoch = reached[variant]
        return f"epoch {epoch}" if epoch else f"not reached in {pair[variant].epochs} epochs"

    ratio = (
        f"; tanh / ReLU: {reached['tanh'] / reached['baseline']:.1f}x"
        if reached["baseline"] and reached["tanh"]
        else ""
    )
    ax.set(
        xlabel="epoch",
        ylabel="training top-1 error (%, the epoch's augmented crops)",
        title=f"Figure 1, epochs {first}-{last} (paper: ReLU reaches 25% 6x sooner, CIFAR-10)\n"
        f"{percent} reached: ReLU {when('baseline')}, tanh {when('tanh')}{ratio}",
    )
    ax.set_ylim(bottom=0)
    _epoch_axis(ax, last)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot(runs: list[Run], out: Path, figure1_level: float = 0.25) -> list[Path]:
    """val_error.png: validation top-1 error per epoch, a panel per variant. figure1.png: training error of ReLU
    (baseline) and tanh per epoch with Figure 1's 25% line, when the runs have both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in (("val_error.png", val_error_figure(runs)), ("figure1.png", figure1_figure(runs, figure1_level))):
        if fig is not None:
            fig.savefig(out / name, dpi=120)
            plt.close(fig)
            written.append(out / name)
    return written
