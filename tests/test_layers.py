"""The package's parts import only downward (docs/architecture.md): base, then network and data (which do not
import each other), then training, then reporting; and no module imports itself back through others."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from fast_run import ROOT, script_env

PACKAGE = ROOT / "src" / "alexnet"
RANK = {"base": 0, "network": 1, "data": 1, "training": 2, "reporting": 3}


def imports(package: Path) -> dict[str, set[str]]:
    """Each module's dotted name -> the alexnet modules it imports, anywhere in its body (a lazy import inside a
    function is a dependency too)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("alexnet.")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("alexnet"):
                # `from alexnet.network import model` imports the module alexnet.network.model
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        found[name] = targets
    return {name: {t for t in targets if t in found} for name, targets in found.items()}


def part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a part from a part at or above its rank but other than its own."""
    wrong = []
    for module, targets in graph.items():
        own = part(module)
        if own is None:
            continue
        for target in targets:
            other = part(target)
            if other is None:
                wrong.append(f"{module} imports {target}, outside the parts")
            elif other != own and RANK[other] >= RANK[own]:
                wrong.append(f"{module} ({own}) imports {target} ({other})")
    return sorted(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles among modules (the packages' __init__ excepted: they import nothing)."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_every_module_belongs_to_a_part():
    graph = imports(PACKAGE)
    assert {part(m) for m in graph} - {None} == set(RANK)
    assert sorted(m for m in graph if part(m) is None) == ["alexnet"]


def test_the_parts_import_only_downward_and_without_cycles():
    graph = imports(PACKAGE)
    assert upward_imports(graph) == []
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("network/model.py", "from alexnet.training import module\n", "alexnet.network.model (network) imports"),
        ("network/model.py", "def f():\n    import alexnet.data.store\n", "imports alexnet.data.store (data)"),
        ("base/errors.py", "from alexnet.reporting.report import x\n", "alexnet.base.errors (base) imports"),
    ],
)
def test_an_upward_or_sideways_import_is_found(tmp_path, module, source, expected):
    package = _toy_package(tmp_path)
    (package / module).write_text(source)
    assert any(expected in line for line in upward_imports(imports(package)))


def test_a_cycle_is_found(tmp_path):
    package = _toy_package(tmp_path)
    (package / "base" / "errors.py").write_text("from alexnet.base import atomic\n")
    (package / "base" / "atomic.py").write_text("from alexnet.base.errors import UserError\n")
    assert cycles(imports(package)) == [["alexnet.base.atomic", "alexnet.base.errors", "alexnet.base.atomic"]]


def _toy_package(tmp_path: Path) -> Path:
    package = tmp_path / "alexnet"
    files = ["base/errors.py", "base/atomic.py", "network/model.py", "data/store.py", "training/module.py"]
    files += ["reporting/report.py"]
    for name in files:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).parent.joinpath("__init__.py").touch()
        (package / name).write_text("")
    (package / "__init__.py").touch()
    return package


def test_what_the_entry_points_import_before_the_config_is_checked_loads_no_torch_or_lightning():
    # A mistyped key or a bad value is refused in a fraction of a second: torch and Lightning take seconds to load,
    # so they come only after the checks (a slip here once made every refusal take 5 s).
    loaded = subprocess.run(
        [sys.executable, "-c", CHECKED_FIRST], capture_output=True, text=True, env=script_env(), check=True
    ).stdout.split()
    assert loaded == [], loaded


CHECKED_FIRST = """
import sys
import alexnet.base.config, alexnet.training.checks, alexnet.training.rundir
print(*sorted({name.split(".")[0] for name in sys.modules} & {"torch", "lightning", "torchvision"}))
"""
