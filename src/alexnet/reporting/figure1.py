"""Figure 1's report: each activation's fastest learning rate (from the screen), its epochs to 25% training error
over seeds, the ratio beside the paper's, and the figure, from the runs' results.json alone."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from alexnet.training.results import FILENAME
from alexnet.training.rundir import PREVIOUS

ACTIVATIONS = ("relu", "tanh")
# Figure 1, read off the plot (training error at epochs counted from 1); docs/paper.md, "Figure 1".
PAPER_CURVES = {
    "relu": {1: 0.47, 2: 0.38, 4: 0.29, 6: 0.25},
    "tanh": {1: 0.55, 2: 0.49, 4: 0.43, 10: 0.37, 20: 0.32, 30: 0.27, 36: 0.25},
}
PAPER_EPOCHS = {"relu": 6, "tanh": 36}  # to 25%: "six times faster"
PAPER_RATIO = 6


@dataclass(frozen=True)
class Run:
    directory: Path
    results: dict

    @property
    def key(self) -> tuple[str, float, int]:
        return self.results["activation"], self.results["lr"], self.results["seed"]

    def error_at(self, epoch: int) -> float | None:
        """The training error of `epoch` (from 1), or None when the run did not train that epoch."""
        curve = self.results["curve"]
        return curve[epoch - 1]["train_err"] if len(curve) >= epoch else None


def find_runs(directories: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Figure 1's runs under the folders (not those set aside in previous-runs/), one per (activation, rate, seed):
    the longest where a screen's run and a longer run of the same seed both exist; those of the level most runs
    stopped at. Also a line for each run left out (unreadable, another level): a damaged run is skipped, not the
    report."""
    every: list[Run] = []
    skipped = []
    for directory in directories:
        for path in sorted(Path(directory).rglob(FILENAME)):
            if PREVIOUS in path.relative_to(directory).parts:
                continue
            try:
                results = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                skipped.append(f"{path}: unreadable ({error}), left out")
                continue
            if results.get("experiment") == "figure1":
                every.append(Run(path.parent, results))
    levels = [r.results["level"] for r in every]
    level = max(set(levels), key=levels.count) if levels else None
    found: dict[tuple, Run] = {}
    for run in every:
        if run.results["level"] != level:
            skipped.append(f"{run.directory}: stopped at another level ({run.results['level']:g}), left out")
        elif run.key not in found or _length(run) > _length(found[run.key]):
            found[run.key] = run
    return sorted(found.values(), key=lambda r: r.key), skipped


def _length(run: Run) -> tuple[int, int]:
    """A run with a higher cap holds more than one that a lower cap stopped (even when it reached the level
    sooner); between equal caps, the longer curve."""
    return run.results["max_epochs"], len(run.results["curve"])


def screen_epochs(runs: list[Run], activation: str) -> int:
    """The screen's length: the fewest epochs any seed-0 run of the activation was allowed."""
    return min(r.results["max_epochs"] for r in runs if r.key[0] == activation and r.key[2] == 0)


def fastest(runs: list[Run], activation: str) -> float | None:
    """The learning rate whose seed-0 run has the lowest training error at the screen's last epoch; a run that
    reached the level within the screen is faster than any that did not (the sooner the faster), one that
    diverged or stopped before the screen's end slower. None without runs of the activation."""
    candidates = [r for r in runs if r.key[0] == activation and r.key[2] == 0]
    if not candidates:
        return None
    epochs = screen_epochs(runs, activation)

    def rank(run: Run) -> tuple[int, float, float]:
        reached, at = run.results["epochs_to_level"], run.error_at(epochs)
        if reached is not None and reached <= epochs:
            return 0, reached, run.key[1]
        if at is None or run.results["stopped"] == "diverged":
            return 2, 0.0, run.key[1]
        return 1, at, run.key[1]

    return min(candidates, key=rank).key[1]


def neighbours(runs: list[Run], activation: str) -> list[float]:
    """The rates of the screen's grid just below and just above the activation's fastest one."""
    rates = sorted({r.key[1] for r in runs if r.key[0] == activation and r.key[2] == 0})
    chosen = fastest(runs, activation)
    if chosen is None:
        return []
    at = rates.index(chosen)
    return [rates[i] for i in (at - 1, at + 1) if 0 <= i < len(rates)]


def _outcome(run: Run) -> str:
    r = run.results
    if r["epochs_to_level"] is not None:
        return f"{r['epochs_to_level']}"
    if r["stopped"] == "diverged":
        return f"diverged (step {r['diverged_at_step']})"
    if r["stopped"] == "stalled":
        flat = r["epochs"] - _best_epoch(r)
        return f"stalled after {r['epochs']} (no lower error in {flat}; last {r['last_train_err']:.3f})"
    return f"not reached in {r['epochs']} (last {r['last_train_err']:.3f})"


def _best_epoch(results: dict) -> int:
    errors = [row["train_err"] for row in results["curve"]]
    return errors.index(min(errors)) + 1


def screen_table(runs: list[Run]) -> str:
    rows = [
        "| activation | learning rate | training error at epochs 1.. of the screen | epochs to the level | chosen |",
        "|---|---:|---|---|:-:|",
    ]
    for activation in ACTIVATIONS:
        chosen = fastest(runs, activation)
        if chosen is None:
            continue
        epochs = screen_epochs(runs, activation)
        for run in (r for r in runs if r.key[0] == activation and r.key[2] == 0):
            errors = ", ".join(f"{e:.3f}" if (e := run.error_at(i)) is not None else "-" for i in range(1, epochs + 1))
            if run.results["stopped"] == "diverged":
                past = "diverged"
            elif run.results["max_epochs"] > epochs:  # trained on towards the level (seeds, neighbours)
                past = _outcome(run)
            else:
                past = "-"
            mark = "yes" if run.key[1] == chosen else ""
            rows.append(f"| {activation} | {run.key[1]:g} | {errors} | {past} | {mark} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Result:
    activation: str
    lr: float
    runs: list[Run]  # the chosen rate's runs past the screen, by seed

    @property
    def epochs(self) -> list[int]:
        return [r.results["epochs_to_level"] for r in self.runs if r.results["epochs_to_level"] is not None]

    @property
    def all_reached(self) -> bool:
        return bool(self.runs) and len(self.epochs) == len(self.runs)


def results(runs: list[Run]) -> dict[str, Result]:
    """Per activation: its fastest rate and that rate's runs that trained past the screen (the seeds)."""
    found = {}
    for activation in ACTIVATIONS:
        lr = fastest(runs, activation)
        if lr is None:
            continue
        epochs = screen_epochs(runs, activation)
        seeds = [r for r in runs if r.key[:2] == (activation, lr) and r.results["max_epochs"] > epochs]
        found[activation] = Result(activation, lr, seeds)
    return found


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:g} ({min(values)}-{max(values)})" if len(values) > 1 else f"{median:g}"


def ratio_line(found: dict[str, Result]) -> str:
    relu, tanh = found.get("relu"), found.get("tanh")
    if relu is None or tanh is None or not relu.epochs or not tanh.epochs:
        return "ratio tanh / ReLU: not measured (both activations need runs that reached the level)"
    ratio = statistics.median(tanh.epochs) / statistics.median(relu.epochs)
    low, high = min(tanh.epochs) / max(relu.epochs), max(tanh.epochs) / min(relu.epochs)
    caveat = ""
    if not tanh.all_reached:  # the runs that never got there would have taken longer: tanh's median is a floor
        caveat = f" (a lower bound: {len(tanh.runs) - len(tanh.epochs)} tanh run(s) never reached the level)"
    if not relu.all_reached:
        caveat += f" ({len(relu.runs) - len(relu.epochs)} ReLU run(s) never reached the level: see the table)"
    return (
        f"ratio tanh / ReLU of the medians: {ratio:.1f} (seed extremes {low:.1f}-{high:.1f}; paper: about "
        f"{PAPER_RATIO}){caveat}"
    )


def cautions(runs: list[Run], found: dict[str, Result]) -> list[str]:
    """What limits the table: too few seeds, a chosen rate at the grid's edge, and whether the grid's rates beside
    the chosen one (where they were run to the level: the check) reach it later, as the screen predicts."""
    lines = []
    for activation, result in found.items():
        rates = sorted({r.key[1] for r in runs if r.key[0] == activation and r.key[2] == 0})
        if len(result.runs) < 3:
            lines.append(f"{activation}: {len(result.runs)} seed(s) past the screen; the spread needs at least 3")
        if result.lr in (rates[0], rates[-1]):
            lines.append(f"{activation}: the fastest rate {result.lr:g} is at the grid's edge: widen the grid")
        chosen = next((r for r in result.runs if r.key[2] == 0), None)
        for lr in neighbours(runs, activation):
            run = next((r for r in runs if r.key == (activation, lr, 0)), None)
            if run is None or chosen is None or run.results["max_epochs"] <= screen_epochs(runs, activation):
                continue
            lines.append(f"{activation}: the check at lr {lr:g} (seed 0): {_verdict(run, chosen)}")
    return lines


def _verdict(run: Run, chosen: Run) -> str:
    """How a neighbour's run compares with the chosen rate's (both seed 0): by epochs to the level where it got
    there; where its cap came first, by the training error of its last epoch against the chosen rate's then."""
    theirs, ours = run.results["epochs_to_level"], chosen.results["epochs_to_level"]
    if theirs is not None:
        if ours is None or theirs < ours:
            return f"{theirs} epochs, sooner than the chosen rate's {ours}: the screen did not pick the fastest"
        return f"{theirs} epochs, {'as soon as' if theirs == ours else 'later than'} the chosen rate's {ours}"
    last = len(run.results["curve"])
    mine, other = run.results["curve"][-1]["train_err"], chosen.error_at(last)
    if other is None:  # the chosen rate's run stopped sooner (it reached the level)
        return f"not reached in {last} epochs; the chosen rate reached it in {ours}: later, as the screen predicts"
    verdict = "behind, as the screen predicts" if mine > other else "ahead: the screen may not have picked the fastest"
    errors = f"its training error {mine:.3f} against the chosen rate's {other:.3f}"
    return f"not reached in {last} epochs; at epoch {last} {errors}: {verdict}"


def main_table(found: dict[str, Result], level: float) -> str:
    rows = [
        f"| activation | learning rate | epochs to {100 * level:g}% per seed | median (range) | paper |",
        "|---|---:|---|---:|---:|",
    ]
    for activation, result in found.items():
        per_seed = ", ".join(f"seed {r.key[2]}: {_outcome(r)}" for r in result.runs) or "no run past the screen"
        paper = PAPER_EPOCHS[activation]
        rows.append(f"| {activation} | {result.lr:g} | {per_seed} | {_spread(result.epochs)} | about {paper} |")
    return "\n".join(rows)


def _source(source: dict) -> str:
    return f"{source['path']} ({source['form']}, {source['files']} files)"


def provenance_lines(runs: list[Run]) -> list[str]:
    commits = sorted({str(r.results["provenance"]["git"]["commit"]) for r in runs})
    dirty = any(r.results["provenance"]["git"]["dirty"] for r in runs)
    data = sorted({r.results["provenance"]["data"]["fingerprint_xxh3"] for r in runs})
    sources = sorted(
        {
            f"{s['path']} ({s['form']}, {s['files']} files)"
            for r in runs
            for s in [r.results["provenance"]["data"]["source"]]
        }
    )
    devices = sorted({r.results["provenance"]["device"] for r in runs})
    hours = sum(r.results["wall_time_s"] for r in runs) / 3600
    return [
        f"commit: {', '.join(commits)}{' (with uncommitted changes)' if dirty else ''}",
        f"data: fingerprint {', '.join(data)} of {', '.join(sources)}",
        f"device: {', '.join(devices)}; {len(runs)} runs, {hours:.2f} hours of training in all",
    ]


def report(runs: list[Run], skipped: list[str] | None = None) -> str:
    if not runs:
        return "No Figure 1 runs found (results.json with experiment figure1)."
    level = runs[0].results["level"]
    found = results(runs)
    lines = [
        "# Figure 1: ReLU against tanh on CIFAR-10",
        "",
        f"Training error is the mean error over each epoch's training batches, each batch scored by the weights "
        f"that then learn from it (what the authors' code printed); epochs are counted from 1. A run stops at the "
        f"first epoch whose training error is below {level:g}.",
        "",
        "## Epochs to the level, at each activation's fastest learning rate",
        "",
        main_table(found, level),
        "",
        ratio_line(found),
        "",
        *(f"- {line}" for line in cautions(runs, found)),
        "",
        "## The learning-rate screen (seed 0)",
        "",
        "The fastest rate is the one with the lowest training error at the screen's last epoch. Epochs to the "
        "level: of the seed-0 runs that trained on past the screen (the chosen rate's, and its neighbours' where "
        "they were run to check the choice); '-' where the run ended with the screen.",
        "",
        screen_table(runs),
        "",
        "## What produced these numbers",
        "",
        *(f"- {line}" for line in provenance_lines(runs)),
    ]
    if skipped:
        lines += ["", *(f"- {line}" for line in skipped)]
    return "\n".join(lines)


def figure(runs: list[Run]):
    """Training error against epochs for each activation's fastest rate (every seed; seed 0 bold), the level,
    and the paper's points read off its Figure 1; axes as the paper's (error 0-0.75, epochs from 0)."""
    import matplotlib.pyplot as plt

    found = results(runs)
    level = runs[0].results["level"]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    colours = {"relu": "tab:blue", "tanh": "tab:red"}
    styles = {"relu": "-", "tanh": "--"}
    last = max(PAPER_EPOCHS.values())
    for activation, result in found.items():
        for run in result.runs or [r for r in runs if r.key[:2] == (activation, result.lr)][:1]:
            curve = run.results["curve"]
            seed = run.key[2]
            label = f"{'ReLU' if activation == 'relu' else 'tanh'}, lr {result.lr:g}" if seed == 0 else None
            ax.plot(
                [row["epoch"] for row in curve],
                [row["train_err"] for row in curve],
                styles[activation],
                color=colours[activation],
                lw=2.0 if seed == 0 else 0.8,
                alpha=1.0 if seed == 0 else 0.6,
                label=label,
            )
            last = max(last, len(curve))
        paper = PAPER_CURVES[activation]
        ax.plot(
            list(paper), list(paper.values()), "o", color=colours[activation], mfc="none", label=f"paper ({activation})"
        )
    ax.axhline(level, color="gray", lw=0.8, ls=":", label=f"{100 * level:g}%")
    ax.set(
        xlim=(0, last + 1),
        ylim=(0, 0.75),
        xlabel="epochs",
        ylabel="training error rate",
        title="Figure 1 on CIFAR-10: ReLU (solid) against tanh (dashed); thin lines: other seeds",
    )
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write(runs: list[Run], out: Path, skipped: list[str] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    text = report(runs, skipped)
    (out / "report.md").write_text(text + "\n")
    fig = figure(runs)
    fig.savefig(out / "figure1.png", dpi=120)
    plt.close(fig)
    return [out / "report.md", out / "figure1.png"]
