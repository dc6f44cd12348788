"""The sweep's wandb dashboard (src/dashboard.py): a workspace view and a report whose every
metric, config key and grouping is one the runs log. Offline, as all tests: the specification, not the server."""

import json
import subprocess
import sys

import pytest

from alexnet.reporting.dashboard import (
    EPOCH,
    FINAL,
    LOGGED_UNDER,
    LR,
    VAL,
    ablation_keys,
    matches,
    spec_keys,
    specification,
)
from alexnet.reporting.report import PAPER_DELTA
from alexnet.training.module import MONITOR
from alexnet.training.wandb_history import STEP, merge, segments
from fast_run import FAST, ROOT, script_env
from wandb_files import wait_for_exit_records

RUN_FIELDS = {"group": "run_group", "jobType": "job_type", "displayName": "display_name"}  # wandb's RunRecord


@pytest.fixture(scope="module")
def spec():
    return specification("me", "alexnet-2012", "full")


def test_the_view_and_the_report_show_the_logged_names_grouped_by_job_type(spec):
    found = spec_keys(spec)
    assert MONITOR in VAL and set(VAL) | set(FINAL) <= found["metrics"]
    assert found["patterns"] == {LR}
    # Every config key an ablation changes is a column, under the name the run's wandb config gives it.
    changed = {key for keys in ablation_keys().values() for key in keys}
    assert {"model.dropout", "data.crops_flips", "model.activation"} <= changed
    assert found["config"] == {LOGGED_UNDER[key.split(".")[0]] + key.split(".", 1)[1] for key in changed}
    for part in (spec["workspace"]["spec"], spec["report"]["spec"]):
        assert spec_keys(part)["run"] == {"jobType", "group", "displayName"}
    view = spec["workspace"]["spec"]["section"]["runSets"][0]
    assert view["grouping"] == [{"section": "run", "name": "jobType"}]
    assert view["filters"]["filters"][0] == {
        "key": {"section": "run", "name": "group"},
        "op": "=",
        "value": "full",
        "disabled": False,
    }
    # The paper's number for each ablation, from alexnet.reporting.report, beside the job type to compare.
    text = json.dumps(spec["report"])
    for variant in PAPER_DELTA:
        assert f"| {variant} |" in text
    assert "`ablation-no_dropout`" in text and "+1.7" in text  # one_column's top-1, Section 3.2


def panel_configs(node) -> list[dict]:
    """Every panel's settings in a view's or a report's specification, in order."""
    if isinstance(node, dict):
        return [node["config"]] if "viewType" in node else [c for v in node.values() for c in panel_configs(v)]
    return [c for v in node for c in panel_configs(v)] if isinstance(node, list) else []


def test_each_panel_plots_its_metrics_on_its_axis_grouped_by_job_type_in_the_view_and_the_report(spec):
    view, report = panel_configs(spec["workspace"]), panel_configs(spec["report"])
    assert view == report  # the same panels in both
    plots = {c["chartTitle"]: c for c in view if "chartTitle" in c}
    assert all(c["groupBy"] == "jobType" for c in plots.values())
    for name in VAL:
        assert (plots[name]["xAxis"], plots[name]["metrics"]) == (EPOCH, [name])
    top1, top5, top1_10, top5_10 = FINAL
    assert plots["top-1 error, 1 and 10 crops"]["metrics"] == [top1, top1_10]
    assert plots["top-5 error, 1 and 10 crops"]["metrics"] == [top5, top5_10]
    lr = plots["learning rate"]
    assert (lr["xAxis"], lr["metricRegex"], lr["yLogScale"]) == (STEP, LR, True)  # 0.01 to 0.00001: a log scale
    assert matches(LR, ["lr-PaperSGD", "train/loss", "val/lr-x"]) == ["lr-PaperSGD"]


def test_every_variant_named_in_the_paper_table_is_an_ablation_file():
    assert set(PAPER_DELTA) - {"centre crop only"} == set(ablation_keys())


def config_value(config: dict, key: str):
    node = config
    for part in key.split("."):
        node = node[part]  # KeyError: not in the run's config
    return node


@pytest.mark.slow
def test_the_dashboard_of_a_real_sweep_shows_only_what_its_runs_logged(tmp_path):
    """A two-ablation sweep logging to wandb offline, then the one command, offline: the specification's
    every metric, x axis with its lines, config key and run field is in the runs' offline files."""
    env = script_env()
    fast = [o for o in FAST if o != "logger=csv"]
    sweep = ["-m", "ablation=baseline,no_dropout", *fast, "logger=default", "trainer.max_epochs=2"]
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *sweep, *paths], cwd=tmp_path, env=env, check=True, timeout=900
    )
    out = tmp_path / "dashboard.json"
    command = [sys.executable, str(ROOT / "src" / "dashboard.py"), "--entity", "me", "--group", "smoke"]
    subprocess.run([*command, "--out", str(out)], env=env, check=True, timeout=300)
    spec = json.loads(out.read_text())
    wait_for_exit_records(tmp_path / "logs")
    runs = [segments(folder.parent) for folder in sorted((tmp_path / "logs" / "smoke").rglob("wandb_id"))]
    assert len(runs) == 2
    for parts in runs:
        rows, record, config = merge(parts), parts[-1].run, parts[-1].config
        logged = {key for row in rows for key in row}
        found = spec_keys(spec)
        assert found["metrics"] <= logged, found["metrics"] - logged
        for pattern in found["patterns"]:
            assert matches(pattern, logged)
        for key in found["config"]:
            config_value(config, key)
        assert all(getattr(record, RUN_FIELDS[field]) for field in found["run"])  # group, job type, name
        # A line plot's x axis is in the rows of its lines: otherwise it draws nothing.
        for section in spec["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]:
            for panel in section["panels"]:
                config = panel["config"]
                if "xAxis" in config:
                    lines = config.get("metrics") or matches(config.get("metricRegex", "$^"), logged)
                    assert any(config["xAxis"] in row and set(lines) & set(row) for row in rows), config
        assert {EPOCH, STEP} <= found["metrics"]
        assert all(len([row for row in rows if name in row]) == 1 for name in FINAL)  # its summary: that value
    # Grouped by job type: one per ablation, in the one group the view and the report filter on.
    job_types = sorted(parts[-1].run.job_type for parts in runs)
    assert len(set(job_types)) == 2 and "ablation-baseline" in job_types[0] and "ablation-no_dropout" in job_types[1]
    assert {parts[-1].run.run_group for parts in runs} == {spec["group"]}
    dropouts = sorted(config_value(parts[-1].config, "model.dropout") for parts in runs)
    assert dropouts == [0.0, 0.5]
