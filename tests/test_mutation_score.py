"""tools/mutation_score.py: the sample it names and the table it counts, on a made-up mutants/ folder."""

import json
import re
import sys

import pytest

from fast_run import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import mutation_score


@pytest.fixture
def mutants(tmp_path):
    def module(path: str, codes: dict) -> None:
        meta = tmp_path / "src" / "alexnet" / f"{path}.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes}))

    module("base/errors", {f"e{i}": 1 for i in range(70)})  # base/ is run whole, however large
    module("data/big", {f"b{i:03d}": None for i in range(100)})
    module("data/small", {"s1": 0, "s2": 5, "s3": 37, "s4": 36})
    return tmp_path


def test_a_sample_takes_base_and_small_modules_whole_and_each_round_draws_from_what_the_last_left(mutants):
    found = mutation_score.modules(mutants)
    once = mutation_score.sample(found, 20, 1, 60, seed=7)
    twice = mutation_score.sample(found, 20, 2, 60, seed=7)
    big = [n for n in once if n.startswith("b")]
    assert len(big) == 20 and set(big) < set(twice) and len({n for n in twice if n.startswith("b")}) == 40
    assert {f"e{i}" for i in range(70)} | {"s1", "s2", "s3", "s4"} <= set(once)
    assert once == mutation_score.sample(found, 20, 1, 60, seed=7)  # the same names for the same seed


def test_the_table_counts_verdicts_as_kills_or_harmless_and_lists_what_is_left_alive(mutants):
    found = mutation_score.modules(mutants)
    rows, alive = mutation_score.table(found, {"s1": "test"})
    small = next(r for r in rows if "data/small" in r)
    # s1 survived but a test named for it kills it; s2 no test reached, unjudged; s3 mypy; s4 timed out
    assert small.split("|")[2:8] == [" 4 ", " 4 ", " 2 ", " 1 ", " 0 ", " 1 "] and alive == ["s2"]
    assert "75.0%" in small
    rows, alive = mutation_score.table(found, {"s1": "test", "s2": "equivalent"})
    assert alive == [] and "| `all` | 174 | 74 | 72 | 1 | 1 | 0 | 98.6% |" in rows[-1]
    # weighted by module size over the modules run: (70 x 70/70 + 4 x 3/4) / 74, both run whole (no sampling error)
    assert rows[-1].endswith("| 98.6% weighted by module size, 98.6-98.6% |")


def test_the_package_wide_score_weights_each_sampled_module_by_its_size():
    whole = mutation_score.Counter(mutants=10, run=10, mutmut=10)
    sampled = mutation_score.Counter(mutants=90, run=20, mutmut=15)  # 75% of a sample of 20 from 90
    p, variance = 0.75, (90 / 100) ** 2 * 0.75 * 0.25 / 19 * (1 - 20 / 90)
    half = 1.96 * variance**0.5
    expected = (
        f"{100 * (0.1 + 0.9 * p):.1f}% weighted by module size, {100 * (0.775 - half):.1f}-{100 * (0.775 + half):.1f}%"
    )
    assert mutation_score.package_wide([whole, sampled]) == expected


def test_the_interval_is_wilsons():
    low, high = mutation_score.wilson(18, 20)
    assert (round(low, 4), round(high, 4)) == (0.699, 0.9721)  # 18 of 20: p=0.9, z=1.96


def test_every_verdict_is_a_known_kind_and_every_test_it_names_exists():
    lines = (ROOT / "docs" / "mutation-verdicts.tsv").read_text().splitlines()
    assert lines[0] == "mutant\tverdict\twhy"
    for line in lines[1:]:
        name, verdict, why = line.split("\t")
        assert verdict in mutation_score.KILLED_BY | mutation_score.HARMLESS and why, line
        for path, test in re.findall(r"(tests/\w+\.py)::(\w+)", why):
            assert f"def {test}(" in (ROOT / path).read_text(), (name, path, test)
