"""Every document the project cites exists, and so does the section it cites.

A citation is a path under docs/ ending in .md, optionally followed by `#anchor` or by a comma and a quoted
section heading. It is looked for in src/, conf/, tests/, notebooks/ (the cells' text), docs/ and README.md;
in Markdown files the relative links (`[text](path#anchor)`) are checked as well. The paper's spec is
docs/paper.md, in the repository: a team's private copy of it, outside the repository, is never cited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fast_run import ROOT

SCANNED = ("src", "conf", "tests", "notebooks", "docs", "README.md")
TEXT = {".py", ".yaml", ".yml", ".md", ".ipynb", ".txt", ".toml", ".cfg", ".sh", ".json", ".csv"}
# Spelled in pieces so that this file does not mention them itself.
FORBIDDEN = ("PAPER" + ".md", "shared" + "/")

CITATION = re.compile(r'(?<![\w./-])(docs/(?:[\w.-]+/)*[\w.-]+\.md)(?:#([\w-]+)|,\s*"([^"]{1,200})")?')
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"(#{1,6})\s+(.+?)\s*#*\s*$")


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of each Markdown heading outside fenced code."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(text: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2... for repeats."""
    seen: dict[str, int] = {}
    result = set()
    for _, title in headings(text):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        result.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return result


def section(text: str, title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    lines, level, out = text.splitlines(), None, []
    found, fenced = False, False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if found and match and len(match.group(1)) <= level:
            break
        if found:
            out.append(line)
        elif match and match.group(2) == title:
            found, level = True, len(match.group(1))
    if not found:
        raise KeyError(f"no heading {title!r}")
    return "\n".join(out)


def readable(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":  # the cells' text, with its quotes unescaped
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    return text


def files(root: Path, scanned=SCANNED) -> list[Path]:
    found = []
    for name in scanned:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        found += [p for p in candidates if p.is_file() and p.suffix in TEXT and "__pycache__" not in p.parts]
    return found


def check_target(root: Path, target: Path, anchor: str | None, title: str | None) -> list[str]:
    shown = target.relative_to(root) if target.is_relative_to(root) else target
    if not target.exists():
        return [f"{shown} does not exist"]
    if anchor is None and title is None:
        return []
    if target.suffix != ".md":
        return [f"{shown} is not Markdown, so has no sections"]
    text = target.read_text(encoding="utf-8")
    if anchor is not None and anchor not in anchors(text):
        return [f"{shown} has no heading with the anchor #{anchor}"]
    if title is not None:
        title = re.sub(r"\s*\n\s*(?:#\s*)?", " ", title).strip()  # a citation wrapped over comment lines
        if title not in {t for _, t in headings(text)}:
            return [f'{shown} has no heading "{title}"']
    return []


def problems(root: Path, scanned=SCANNED) -> list[str]:
    """What is wrong, as "file:line: what", in file order and line order within a file."""
    root, found = root.resolve(), []
    for path in files(root, scanned):
        text = readable(path)
        checks: list[tuple[int, list[str]]] = []  # (offset, its problems)
        for word in FORBIDDEN:
            checks += [(m.start(), [f"mentions {word}"]) for m in re.finditer(re.escape(word), text)]
        for m in CITATION.finditer(text):
            checks.append((m.start(), check_target(root, root / m.group(1), m.group(2), m.group(3))))
        if path.suffix == ".md":
            for m in LINK.finditer(text):
                target, _, anchor = m.group(1).partition("#")
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                resolved = (path.parent / target).resolve() if target else path
                checks.append((m.start(), check_target(root, resolved, anchor or None, None)))
        name = path.relative_to(root)
        lines = [
            f"{name}:{text.count(chr(10), 0, offset) + 1}: {message}"
            for offset, messages in sorted(checks, key=lambda check: check[0])
            for message in messages
        ]
        found += dict.fromkeys(lines)  # a Markdown link to docs/... is also a citation: one line for both
    return found


def test_every_cited_document_and_section_exists():
    found = problems(ROOT)
    assert not found, "\n".join(found)


def test_the_spec_is_in_the_repository_and_linked_from_the_notes():
    assert (ROOT / "docs" / "paper.md").is_file()
    assert "(paper.md)" in (ROOT / "docs" / "paper-notes.md").read_text()


def test_the_check_finds_broken_citations(tmp_path):
    docs = "docs" + "/"  # in pieces, so that the scan of this file does not read them as citations
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "spec.md").write_text(
        "# Spec\n\n## Two GPUs the paper's way (Section 3.2)\n\n```\n# not a heading\n```\n\n### Repeated\n\n"
        "### Repeated\n"
    )
    (tmp_path / "docs" / "notes.md").write_text(
        "[ok](spec.md#two-gpus-the-papers-way-section-32) [ok](spec.md#repeated-1) [ok](#notes)\n# Notes\n"
        "[bad](spec.md#nowhere) [bad](missing.md) [web](https://example.org/x.md#y)\n"
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(
        f'# {docs}spec.md, "Two GPUs the paper\'s way (Section 3.2)"\n'
        f"# {docs}spec.md#repeated and {docs}spec.md.\n"
        f'# {docs}spec.md, "Repeated", wrapped: {docs}spec.md, "Two GPUs the paper\'s\n# way (Section 3.2)"\n'
        f'# {docs}spec.md, "No such section"\n'
        f'# {docs}spec.md, "not a heading"\n'
        f"# {docs}spec.md#no-such-anchor\n"
        f"# {docs}gone.md\n"
        f"# {FORBIDDEN[0]} and ../{FORBIDDEN[1]}spec\n"
    )
    notebook = {
        "cells": [{"cell_type": "markdown", "source": [f'see {docs}spec.md, "Spec" and {docs}spec.md, "Nope"']}]
    }
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "n.ipynb").write_text(json.dumps(notebook))
    found = problems(tmp_path, ("src", "docs", "notebooks", "README.md"))
    assert found == [
        f'src/a.py:5: {docs}spec.md has no heading "No such section"',
        f'src/a.py:6: {docs}spec.md has no heading "not a heading"',
        f"src/a.py:7: {docs}spec.md has no heading with the anchor #no-such-anchor",
        f"src/a.py:8: {docs}gone.md does not exist",
        f"src/a.py:9: mentions {FORBIDDEN[0]}",
        f"src/a.py:9: mentions {FORBIDDEN[1]}",
        f"{docs}notes.md:3: {docs}spec.md has no heading with the anchor #nowhere",
        f"{docs}notes.md:3: {docs}missing.md does not exist",
        f'notebooks/n.ipynb:1: {docs}spec.md has no heading "Nope"',
    ]


def test_section_reads_up_to_the_next_heading_of_its_level():
    text = "# A\n\n## B\none\n### C\ntwo\n```\n## code\n```\n## D\nthree\n"
    assert section(text, "B") == "one\n### C\ntwo\n```\n## code\n```"
    with pytest.raises(KeyError):
        section(text, "E")
