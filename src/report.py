"""The ablation report: report.md (the epochs trained, whether the sweep is long enough to compare with the
paper, a table of our error rates beside the paper's, what each column holds) and PNG plots; with --figure1,
Figure 1's report (ReLU against tanh on CIFAR-10: the learning-rate screen, epochs to 25% over seeds, the ratio).

    python src/report.py logs/full/multirun                  # after a sweep
    python src/report.py logs/smoke/multirun --out docs/smoke-ablations
    python src/report.py --figure1 logs/figure1/multirun --out docs/figure1
    python src/report.py --figure1 logs/figure1/multirun --chosen     # each activation's fastest rate, one a line
    python src/report.py --figure1 logs/figure1/multirun --neighbours # the grid's rates beside each fastest one

Reads results.json and csv/metrics.csv under each folder; needs no network and no wandb server.
"""

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="run or sweep folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md and the plots")
    parser.add_argument("--figure1", action="store_true", help="Figure 1's report (src/figure1.py's runs)")
    parser.add_argument("--chosen", action="store_true", help="with --figure1: print each activation's fastest rate")
    parser.add_argument(
        "--neighbours", action="store_true", help="with --figure1: print the grid's rates beside each fastest one"
    )
    args = parser.parse_args()
    out = args.out or Path(args.dirs[0])
    if args.figure1:
        figure1(args.dirs, out, args.chosen, args.neighbours)
        return
    from alexnet.reporting.report import find_runs, plot, report

    runs = find_runs(args.dirs)
    text = report(runs)
    print(text)
    for path in plot(runs, out):
        print(f"plot: {path}")
    (out / "report.md").write_text(text + "\n")
    print(f"report: {out / 'report.md'}")


def figure1(dirs: list[str | Path], out: Path, chosen: bool, neighbours: bool) -> None:
    from alexnet.reporting import figure1 as f1

    runs, skipped = f1.find_runs(dirs)
    for line in skipped:
        print(line, file=sys.stderr)
    if not runs:
        sys.exit(f"error: no Figure 1 runs (results.json of src/figure1.py) under {', '.join(map(str, dirs))}")
    if chosen or neighbours:  # "activation rate" lines, for tools/figure1.sh
        for activation in f1.ACTIVATIONS:
            rates = f1.neighbours(runs, activation) if neighbours else [f1.fastest(runs, activation)]
            for lr in rates:
                if lr is not None:
                    print(f"{activation} {lr:g}")
        return
    print(f1.report(runs, skipped))
    for path in f1.write(runs, out, skipped):
        print(f"wrote: {path}")


if __name__ == "__main__":
    main()
