"""The mutation score per module, from mutmut's results in mutants/ and the verdicts in docs/mutation-verdicts.tsv.

    python tools/mutation_score.py --sample 20            # a seeded sample's names: 20 mutants of each module
    mutmut run $(python tools/mutation_score.py --sample 20 --rounds 2)   # 40 of each, the first 20 already run
    python tools/mutation_score.py                        # the score table (Markdown), and the survivors unjudged

A mutant mutmut left alive (survived, or no test reached it) counts as killed once docs/mutation-verdicts.tsv
names a test that kills it, and as harmless where it is judged equivalent, wording, cosmetic, performance or
online. base/ and the modules of at most --whole mutants are run whole, never sampled.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = ROOT / "docs" / "mutation-verdicts.tsv"
KILLED_BY = {"test", "suite", "slow", "outside", "fixed"}  # a test fails on it (or the source changed to kill it)
HARMLESS = {"equivalent", "wording", "cosmetic", "performance", "online"}
# mutmut's exit codes (mutmut.stats.status_by_exit_code): None is not run yet
KILLED, SURVIVED, NO_TESTS, TYPE_CHECK = {1, 3, 36, 24, -24, 152, 255, -11, -9}, {0}, {5, 33}, {37}


def modules(mutants: Path) -> dict[str, dict[str, int | None]]:
    """Each module's mutants and their exit codes, from mutmut's .meta files."""
    found = {}
    for meta in sorted(mutants.glob("src/**/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            found[str(meta.relative_to(mutants))[: -len(".meta")]] = codes
    return found


def sample(found: dict[str, dict], size: int, rounds: int, whole: int, seed: int) -> list[str]:
    """`size` mutants of each module per round, each round drawn from what the earlier ones left; base/ and the
    modules of at most `whole` mutants are taken whole."""
    picked: dict[str, list[str]] = {}
    for step in range(rounds):
        rng = random.Random(seed + step)
        for module, codes in found.items():
            if "/base/" in module or len(codes) <= whole:
                picked[module] = sorted(codes)
                continue
            rest = [key for key in sorted(codes) if key not in picked.get(module, [])]
            picked[module] = picked.get(module, []) + rng.sample(rest, min(size, len(rest)))
    return [name for names in picked.values() for name in names]


def wilson(killed: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval of a share estimated from a sample (Wilson's score interval)."""
    if n == 0:
        return 0.0, 1.0
    p, spread = killed / n, z * z / n
    centre, half = p + spread / 2, z * math.sqrt(p * (1 - p) / n + spread / (4 * n))
    return (centre - half) / (1 + spread), (centre + half) / (1 + spread)


def table(found: dict[str, dict], verdicts: dict[str, str]) -> tuple[list[str], list[str]]:
    rows = [
        "| module | mutants | run | killed by mutmut or mypy | killed by a test named in the verdicts | harmless | "
        "alive | score | 95% interval |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    unjudged, total, strata = [], Counter(), []
    for module, codes in found.items():
        c = Counter()
        for name, code in codes.items():
            if code is None:
                continue
            c["run"] += 1
            if code in KILLED | TYPE_CHECK:
                c["mutmut"] += 1
            elif verdicts.get(name) in KILLED_BY:
                c["tests"] += 1
            elif verdicts.get(name) in HARMLESS:
                c["harmless"] += 1
            else:
                c["alive"] += 1
                unjudged.append(name)
        c["mutants"] = len(codes)
        total += c
        strata.append(c)
        rows.append(row(module, c))
    rows.append(row("all", total, package_wide(strata)))
    return rows, unjudged


def package_wide(strata: list[Counter]) -> str:
    """The whole package's score from a sample per module: each module's share weighted by its mutant count, with
    the normal 95% interval of that stratified estimate (each module's variance shrunk by the share not sampled)."""
    run = [c for c in strata if c["run"]]
    size = sum(c["mutants"] for c in run)
    score = sum(c["mutants"] * (c["mutmut"] + c["tests"]) / c["run"] for c in run) / size
    variance = 0.0
    for c in run:
        p, n, m = (c["mutmut"] + c["tests"]) / c["run"], c["run"], c["mutants"]
        if n > 1:
            variance += (m / size) ** 2 * p * (1 - p) / (n - 1) * (1 - n / m)
    half = 1.96 * math.sqrt(variance)
    return f"{100 * score:.1f}% weighted by module size, {100 * (score - half):.1f}-{100 * (score + half):.1f}%"


def row(module: str, c: Counter, weighted: str = "") -> str:
    killed, run = c["mutmut"] + c["tests"], c["run"]
    low, high = wilson(killed, run)
    score = f"{100 * killed / run:.1f}%" if run else "-"
    interval = weighted or ("" if run == c["mutants"] else f"{100 * low:.0f}-{100 * high:.0f}%")
    return (
        f"| `{module}` | {c['mutants']} | {run} | {c['mutmut']} | {c['tests']} | {c['harmless']} | {c['alive']} | "
        f"{score} | {interval} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants", help="mutmut's folder")
    parser.add_argument("--sample", type=int, help="print the names of a sample of this many mutants per module")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --sample, each from what the earlier left")
    parser.add_argument("--whole", type=int, default=60, help="modules with at most this many are run whole")
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args()
    found = modules(args.mutants)
    if not found:
        parser.error(f"no mutmut results in {args.mutants}: run `mutmut run` first (it generates the mutants)")
    if args.sample:
        print("\n".join(sample(found, args.sample, args.rounds, args.whole, args.seed)))
        return
    verdicts = {}
    for line in VERDICTS.read_text().splitlines()[1:]:
        name, verdict, _ = line.split("\t", 2)
        verdicts[name] = verdict
    rows, unjudged = table(found, verdicts)
    print("\n".join(rows))
    if unjudged:
        print(f"\nalive and not judged in {VERDICTS.name}:\n" + "\n".join(unjudged))


if __name__ == "__main__":
    main()
