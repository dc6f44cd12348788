"""Upload runs to wandb, each as one wandb run whose history continues across its resumes.

    python src/upload.py logs/full/multirun                # every run under the folder, online
    python src/upload.py logs/smoke/baseline --offline     # one run, into a folder for `wandb sync`

A run resumed N times has N+1 wandb folders of one id, which `wandb sync` does not join; here they are
joined (alexnet.training.wandb_history: each epoch's rows once, those of the process that went on) and logged as one
run of that id. --offline writes it to <run dir>/wandb-upload/wandb/offline-run-*, for a machine without
network: `wandb sync` that folder from one with network. The run must not be on the server yet (docs/wandb.md).
"""

import argparse
from pathlib import Path

from alexnet.training.wandb_history import merge, segments, write_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument("--offline", action="store_true", help="write a folder for `wandb sync` instead")
    parser.add_argument("--id", default=None, help="upload as this wandb run id (one run folder only)")
    args = parser.parse_args()
    runs = sorted({path.parent for folder in args.dirs for path in folder.rglob("wandb_id")})
    if not runs:
        parser.error(f"no run folder (one with a wandb_id file) under {', '.join(map(str, args.dirs))}")
    if args.id and len(runs) > 1:
        parser.error(f"--id names one run; {len(runs)} run folders were found")
    for run_dir in runs:
        parts = segments(run_dir)
        folder = write_run(run_dir, mode="offline" if args.offline else None, run_id=args.id)
        print(f"{run_dir}: {len(parts)} wandb folder(s), {len(merge(parts))} rows -> {folder}")


if __name__ == "__main__":
    main()
