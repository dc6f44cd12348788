"""The sweep's dashboard in wandb, built from code with wandb-workspaces: a saved workspace view and a report.

Both show one experiment (a wandb group) with its runs grouped by job type, which is one ablation each
(conf/logger/default.yaml: the run's name from its overrides, `ablation-tanh`): the validation top-1 and
top-5 error per epoch, the final 1- and 10-crop errors beside the paper's differences from the baseline
(alexnet.reporting.report.PAPER_DELTA), the training loss and the learning rate, and a runs table of the keys the
ablations change (conf/ablation/). Every name is taken from what the code logs (below); the tests build the
dashboard from a real sweep's offline wandb files and check that each name in it was logged.

wandb-workspaces 0.4 has no public way to write a view or a report without a server: `specification` gives
their models (`_to_model()`, what `save()` sends) as JSON. A report's run set names its project by the
server's id, which needs the server: offline, the run set is written without it (the report's own project).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

from omegaconf import OmegaConf

from alexnet.reporting.report import PAPER_DELTA, _points
from alexnet.training.module import MONITOR
from alexnet.training.results import ERRORS
from alexnet.training.wandb_history import STEP

if TYPE_CHECKING:
    from wandb_workspaces.reports.v2.interface import BlockTypes, MetricType

CONF = Path(__file__).resolve().parents[3] / "conf"

# What the runs log, by the names the code gives them.
TEN_CROPS = "_10crop"  # alexnet.training.module.evaluation_step: the 10-crop evaluation's names
TOP_K = tuple(name for name in ERRORS if not name.endswith(TEN_CROPS))  # top1_err, top5_err
VAL = tuple(f"{MONITOR.partition('/')[0]}/{name}" for name in TOP_K)  # per epoch: MONITOR (val/top1_err), top-5
FINAL = tuple(f"test/{name}" for name in ERRORS)  # once, by alexnet.training.evaluation.evaluate (trainer.test)
LOSS = "train/loss"  # alexnet.training.module.AlexNetModule.training_step, every trainer.log_every_n_steps
LR = "^lr-"  # Lightning's LearningRateMonitor at each epoch's start: lr-<optimizer>/<group> (lr-PaperSGD/weights)
EPOCH = "epoch"  # Lightning adds it to the rows of the module's metrics (not to the learning rate's)
JOB_TYPE = "JobType"  # the run's job type: one per ablation
GROUP = "Group"  # the run's group: the experiment
# How Lightning's WandbLogger gives a config key to wandb: the module's hyperparameters nested (model, optim),
# the datamodule's at the top level (data.crops_flips is `crops_flips`).
LOGGED_UNDER = {"model": "model.", "optim": "optim.", "data": ""}
JOB_TYPE_OF = "ablation-{}"  # a sweep's job type for ablation=<variant> (alexnet.base.config.run_name)


def ablation_keys(conf: Path = CONF) -> dict[str, list[str]]:
    """Each file of conf/ablation/ (the variant) and the config keys it changes ("model.dropout")."""

    def flat(node: dict, prefix: str = "") -> list[str]:
        return [
            key
            for name, value in node.items()
            for key in (flat(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])
        ]

    return {
        path.stem: flat(cast(dict, OmegaConf.to_container(OmegaConf.load(path))) or {})  # each file a mapping
        for path in sorted((conf / "ablation").glob("*.yaml"))
    }


def logged_key(key: str) -> str:
    """A config key ("data.crops_flips") as the run's wandb config has it ("crops_flips")."""
    group, _, name = key.partition(".")
    return LOGGED_UNDER[group] + name


def column(key: str) -> str:
    """The runs table's column of a logged config key: wandb keeps each top-level value under `value`
    ("model.dropout" -> "config:model.value.dropout")."""
    first, _, rest = key.partition(".")
    return f"config:{first}.value" + (f".{rest}" if rest else "")


def columns() -> list[str]:
    """The runs table: the job type, every key an ablation changes, the final errors."""
    keys = sorted({logged_key(key) for keys in ablation_keys().values() for key in keys})
    return ["run:displayName", "run:jobType", *map(column, keys), *(f"summary:{name}" for name in FINAL)]


def paper_table() -> str:
    """Markdown: the paper's rise in error when each feature is taken away, beside the job type to compare."""
    variants = ablation_keys()
    lines = [
        "| ablation | job type | top-1 vs baseline, paper | top-5 vs baseline, paper | paper's source |",
        "|---|---|---:|---:|---|",
    ]
    for variant, (top1, top5, source) in PAPER_DELTA.items():
        job = f"`{JOB_TYPE_OF.format(variant)}`" if variant in variants else f"`{FINAL[0]}` vs `{FINAL[2]}`"
        lines.append(f"| {variant} | {job} | {_points(top1)} | {_points(top5)} | {source} |")
    return "\n".join(lines)


PAPER_NOTE = (
    "The paper gives differences from its baseline (ILSVRC, 90 epochs), in points: compare them with each "
    "ablation's bar minus the baseline's. `centre crop only` is the baseline's 1-crop error minus its 10-crop one."
)


def panels() -> dict[str, list]:
    """The panels, by section: the same in the workspace view and in the report."""
    import wandb_workspaces.reports.v2 as wr

    def bars(title: str, metrics: list[MetricType]) -> wr.BarPlot:
        return wr.BarPlot(title=title, metrics=metrics, groupby=JOB_TYPE, orientation="v")

    top1, top5, top1_10, top5_10 = FINAL
    return {
        "Validation error per epoch": [
            wr.LinePlot(title=name, x=EPOCH, y=[name], groupby=JOB_TYPE, title_x=EPOCH) for name in VAL
        ],
        "Final error, 1 and 10 crops, beside the paper": [
            bars("top-1 error, 1 and 10 crops", [top1, top1_10]),
            bars("top-5 error, 1 and 10 crops", [top5, top5_10]),
            wr.MarkdownPanel(markdown=f"{paper_table()}\n\n{PAPER_NOTE}"),
        ],
        "Training": [
            wr.LinePlot(title=LOSS, x=STEP, y=[LOSS], groupby=JOB_TYPE),
            wr.LinePlot(title="learning rate", x=STEP, metric_regex=LR, groupby=JOB_TYPE, log_y=True),
        ],
    }


def workspace(entity: str, project: str, group: str):
    """The saved view: the experiment's runs grouped by job type, a section per panel group."""
    import wandb_workspaces.workspaces as ws

    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"{group}: ablations",
        sections=[ws.Section(name=name, panels=items, is_open=True) for name, items in panels().items()],
        runset_settings=ws.RunsetSettings(
            filters=ws.And(ws.Metric(GROUP) == group), groupby=[ws.Metric(JOB_TYPE)], pinned_columns=columns()
        ),
    )


def report(entity: str, project: str, group: str, offline: bool = False):
    """The report: the same panels over the experiment's runs, and the paper's numbers."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(
        entity="" if offline else entity,
        project="" if offline else project,
        name=group,
        filters=f"{GROUP} = '{group}'",
        groupby=[JOB_TYPE],
        pinned_columns=columns(),
    )
    blocks: list[BlockTypes] = [
        wr.P(f"Experiment `{group}`: one line or bar per ablation (job type), from the runs' own logs."),
    ]
    for name, items in panels().items():
        blocks += [wr.H2(name), wr.PanelGrid(runsets=[runset], panels=items)]
    blocks += [wr.H2("The paper's numbers"), wr.MarkdownBlock(text=paper_table()), wr.P(PAPER_NOTE)]
    return wr.Report(entity=entity, project=project, title=f"AlexNet ablations: {group}", blocks=blocks)


def specification(entity: str, project: str, group: str) -> dict:
    """The view's and the report's models as saving would send them (the report's run sets without their
    project's server id), as JSON-ready dicts."""

    def dump(model) -> dict:
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    return {
        "entity": entity,
        "project": project,
        "group": group,
        "workspace": dump(workspace(entity, project, group)._to_model()),
        "report": dump(report(entity, project, group, offline=True)._to_model()),
    }


def save(entity: str, project: str, group: str) -> tuple[str, str]:
    """Saves the view and the report to the wandb server; their URLs."""
    view = workspace(entity, project, group).save()
    saved = report(entity, project, group)
    saved.save()
    return view.url, saved.url


def spec_keys(spec: dict) -> dict[str, set[str]]:
    """What a specification refers to: metric keys (panels' axes and lines, summary columns), metric
    patterns (a panel's regex), config keys (columns), run fields (grouping, filters, columns)."""
    found: dict[str, set[str]] = {"metrics": set(), "patterns": set(), "config": set(), "run": set()}

    def visit(node) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if "viewType" in node and isinstance(node.get("config"), dict):
            config = node["config"]
            found["metrics"].update(config.get("metrics") or [])
            if config.get("xAxis"):
                found["metrics"].add(config["xAxis"])
            if config.get("useMetricRegex"):
                found["patterns"].add(config["metricRegex"])
            if config.get("groupBy"):
                found["run"].add(config["groupBy"])
        for grouping in node.get("grouping") or []:
            found[grouping["section"]].add(grouping["name"])
        if isinstance(node.get("filters"), dict):
            for leaf in _leaves(node["filters"]):
                found[leaf["key"]["section"]].add(leaf["key"]["name"])
        for name in node.get("columnOrder") or []:
            section, _, key = name.partition(":")
            if section == "config":
                first, _, rest = key.partition(".value")
                found["config"].add(first + rest)
            else:
                found["metrics" if section == "summary" else section].add(key)
        for value in node.values():
            visit(value)

    visit(spec)
    return found


def _leaves(filters: dict):
    if "key" in filters and isinstance(filters["key"], dict):
        yield filters
    for child in filters.get("filters") or []:
        yield from _leaves(child)


def matches(pattern: str, keys) -> list[str]:
    return [key for key in keys if re.search(pattern, key)]
