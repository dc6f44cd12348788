"""The ablation report: report.md (the epochs trained, whether the sweep is long enough to compare with the
paper, a table of our error rates beside the paper's, what each column holds) and PNG plots.

    python src/report.py logs/full/multirun                  # after a sweep
    python src/report.py logs/smoke/multirun --out docs/smoke-ablations

Reads results.json and csv/metrics.csv under each folder; needs no network and no wandb server.
"""

import argparse
from pathlib import Path

from alexnet.reporting.report import find_runs, plot, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="run or sweep folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md and the plots")
    args = parser.parse_args()
    runs = find_runs(args.dirs)
    text = report(runs)
    print(text)
    out = args.out or Path(args.dirs[0])
    for path in plot(runs, out):
        print(f"plot: {path}")
    (out / "report.md").write_text(text + "\n")
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
