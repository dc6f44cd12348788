"""The ablation report: our error rates beside the paper's, from the runs' own files (results.json and the
CSV log), with no network and no wandb server."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.results import ERRORS, FILENAME, read_results
from alexnet.rundir import PREVIOUS

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
    val_top1: dict[int, float] = field(default_factory=dict)  # epoch -> error
    train_top1: dict[int, float] = field(default_factory=dict)


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


def table(runs: list[Run]) -> str:
    """Markdown: errors in %, and each variant's difference from the baseline beside the paper's."""
    base = next((r for r in runs if r.variant == "baseline"), None)
    lines = [
        "| variant | top-1 | top-5 | top-1 (10 crops) | top-5 (10 crops) | top-1 vs baseline | paper | "
        "top-5 vs baseline | paper | paper's source |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = [(r.variant, r.results) for r in runs]
    if base is not None:  # centre crop only vs 10 crops, from the baseline's own two evaluations
        rows.append(("centre crop only", None))
    for variant, results in rows:
        paper1, paper5, source = PAPER_DELTA.get(variant, (None, None, ""))
        top1, top5, top1_10, top5_10 = ERRORS
        if results is None:
            r = base.results
            errors = [r[key] for key in ERRORS]
            d1, d5 = 100 * (r[top1] - r[top1_10]), 100 * (r[top5] - r[top5_10])
        else:
            errors = [results[key] for key in ERRORS]
            d1 = 100 * (results[top1_10] - base.results[top1_10]) if base else None
            d5 = 100 * (results[top5_10] - base.results[top5_10]) if base else None
        cells = " | ".join(f"{100 * e:.1f}" for e in errors)
        deltas = " | ".join(_points(d) for d in (d1, paper1, d5, paper5))
        lines.append(f"| {variant} | {cells} | {deltas} | {source} |")
    return "\n".join(lines)


def epochs_to_reach(curve: dict[int, float], level: float) -> int | None:
    """The first epoch (counted from 1) whose training error is at or below `level`."""
    return next((epoch + 1 for epoch in sorted(curve) if curve[epoch] <= level), None)


def plot(runs: list[Run], out: Path, figure1_level: float = 0.25) -> list[Path]:
    """val_error.png: validation top-1 error per epoch, one line per variant. figure1.png: training error of
    ReLU (baseline) and tanh per epoch with Figure 1's 25% line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        epochs = sorted(run.val_top1)
        ax.plot([e + 1 for e in epochs], [100 * run.val_top1[e] for e in epochs], marker="o", label=run.variant)
    ax.set(xlabel="epoch", ylabel="validation top-1 error (%)", title="Ablations: validation error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "val_error.png", dpi=120)
    plt.close(fig)
    written.append(out / "val_error.png")
    pair = {r.variant: r for r in runs if r.variant in ("baseline", "tanh")}
    if len(pair) == 2:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        reached = {}
        for variant, style, label in (("baseline", "-", "ReLU"), ("tanh", "--", "tanh")):
            curve = pair[variant].train_top1
            epochs = sorted(curve)
            ax.plot([e + 1 for e in epochs], [100 * curve[e] for e in epochs], style, label=label)
            reached[label] = epochs_to_reach(curve, figure1_level)
        ax.axhline(100 * figure1_level, color="gray", linewidth=0.8)
        ratio = (
            f"tanh / ReLU epochs to {100 * figure1_level:.0f}%: {reached['tanh'] / reached['ReLU']:.1f}x"
            if reached["ReLU"] and reached["tanh"]
            else f"epochs to {100 * figure1_level:.0f}%: ReLU {reached['ReLU']}, tanh {reached['tanh']}"
        )
        ax.set(xlabel="epoch", ylabel="training top-1 error (%)", title=f"Figure 1 (paper: 6x). {ratio}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "figure1.png", dpi=120)
        plt.close(fig)
        written.append(out / "figure1.png")
    return written
