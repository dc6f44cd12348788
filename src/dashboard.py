"""Build the sweep's wandb dashboard from code: a saved workspace view and a report (alexnet.reporting.dashboard).

    python src/dashboard.py --entity ME --group full             # saves both; prints their URLs
    python src/dashboard.py --entity ME --group full --offline   # writes their specification instead

Upload the runs first (src/upload.py, docs/wandb.md). The view and the report show the experiment's runs (its
wandb group) grouped by job type, one per ablation. Offline (--offline, WANDB_MODE=offline or no server to
reach) nothing is sent: the view's and the report's specification is written to --out as JSON.
"""

import argparse
import json
import os
from pathlib import Path

from omegaconf import OmegaConf

from alexnet.reporting.dashboard import CONF, save, specification


def main() -> None:
    project = OmegaConf.load(CONF / "logger" / "default.yaml").wandb.project
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entity", required=True, help="the wandb user or team of the project")
    parser.add_argument("--project", default=project, help=f"the wandb project (default: {project})")
    parser.add_argument("--group", default="full", help="the experiment, the runs' wandb group (default: full)")
    parser.add_argument("--offline", action="store_true", help="write the specification instead of saving")
    parser.add_argument("--out", type=Path, default=None, help="the specification's file (dashboard-GROUP.json)")
    args = parser.parse_args()
    out = args.out or Path(f"dashboard-{args.group}.json")
    if not (args.offline or os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled")):
        try:
            view, report = save(args.entity, args.project, args.group)
        except Exception as error:  # no network, no API key, no such project: the specification is kept
            out.write_text(json.dumps(specification(args.entity, args.project, args.group), indent=1) + "\n")
            raise SystemExit(f"Not saved to wandb ({error}). The specification is in {out}.") from error
        print(f"workspace view: {view}\nreport: {report}")
        return
    out.write_text(json.dumps(specification(args.entity, args.project, args.group), indent=1) + "\n")
    print(f"specification of the view and the report: {out} (nothing sent to wandb)")


if __name__ == "__main__":
    main()
