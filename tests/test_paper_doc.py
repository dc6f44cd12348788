"""The paper's numbers that code and tests hold as constants are the numbers docs/paper.md states.

Each test reads one table or block of docs/paper.md and compares it with the constant that cites it, so that
neither can change without the other."""

import re

import pytest
import torch

from alexnet.network.model import AlexNet
from alexnet.reporting.report import PAPER_DELTA
from fast_run import ROOT
from test_augment import EIGVAL, EIGVEC
from test_citations import section
from test_model import PAPER_PARAMS

SPEC = (ROOT / "docs" / "paper.md").read_text(encoding="utf-8")


def table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in text, one dict per row, keyed by the header's cells."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    header, body = cells[0], cells[2:]
    return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str) -> float | None:
    return None if cell == "-" else float(cell.replace(",", ""))


def test_the_parameter_counts_are_the_spec_s():
    counts = {row["layer"]: number(row["parameters"]) for row in table(section(SPEC, "Parameter counts"))}
    assert counts == {**PAPER_PARAMS, "total": 60_965_224}
    assert sum(PAPER_PARAMS.values()) == 60_965_224


def test_the_report_s_paper_deltas_are_the_spec_s():
    rows = table(section(SPEC, "What each feature is worth"))
    spec = {row["ablation"].strip("`"): (number(row["top-1 rise"]), number(row["top-5 rise"])) for row in rows}
    assert spec == {variant: (top1, top5) for variant, (top1, top5, _) in PAPER_DELTA.items()}


def test_the_centre_crop_delta_is_footnote_5_s_difference():
    rows = {row["model"]: row for row in table(section(SPEC, "Table 1 and Table 2")) if row["table"] != "Table 2"}
    ten, one = rows["1 CNN (ten crops)"], rows["1 CNN, centre crop only"]
    top1, top5, _ = PAPER_DELTA["centre crop only"]
    assert number(one["top-1 error"]) - number(ten["top-1 error"]) == pytest.approx(top1)
    assert number(one["top-5 error"]) - number(ten["top-5 error"]) == pytest.approx(top5)


def test_the_pca_constants_are_the_spec_s():
    block = [line for line in section(SPEC, "PCA colour augmentation").splitlines() if line.startswith("    ")]
    numbers = [float(x) for line in block for x in re.findall(r"-?\d+\.\d+", line)]
    assert numbers == pytest.approx(EIGVAL.tolist() + EIGVEC.flatten().tolist(), abs=1e-6)


def test_the_network_s_lrn_constants_are_the_spec_s():
    text = section(SPEC, "Local response normalisation")
    constants: dict[str, str] = {}
    for name, value in re.findall(r"\b(k|n|alpha|beta) = (\d(?:[\d.e-]*\d)?)", text):
        constants.setdefault(name, value)  # the first statement: the paper's (Caffe's k = 1 comes later)
    with torch.device("meta"):
        model = AlexNet()
    for stage in (model.conv1, model.conv2):
        lrn = stage.lrn
        assert (lrn.k, lrn.size, lrn.alpha, lrn.beta) == tuple(float(constants[c]) for c in ("k", "n", "alpha", "beta"))
