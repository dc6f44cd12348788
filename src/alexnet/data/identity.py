"""What a store is made from, told apart: the source (data.root and its fingerprint, or the sample's spec) and
the listing of the items its slots were assigned from."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from alexnet.data.layout import Layout, source_fingerprint
from alexnet.data.store import SPLITS, StoreError


def listing(layout: Layout) -> str:
    """Every item and its label: what an unfinished store's slots were assigned from."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for path, label in getattr(layout, split):
            digest.update(f"{split}\t{path}\t{label}\n".encode())
    return digest.hexdigest()


def source_of(root: str | Path, sample: dict | None = None) -> dict | None:
    """What a store is made from: data.root resolved, and what tells its content apart (the sample's spec, which
    makes the same bytes every time, or the cheap fingerprint of the files). None when data.root is not there:
    a complete store is then used as it is (a training node may hold the store and not the dataset)."""
    root = Path(root)
    if sample is not None:
        return {"root": str(root.resolve()), "sample": dict(sample)}
    if not root.is_dir():
        return None
    return {"root": str(root.resolve()), **source_fingerprint(root)}


def identity(source: dict) -> dict | str | None:
    return source.get("sample") or source.get("fingerprint")


def describe_source(source: dict) -> str:
    what = f"sample {source['sample']}" if "sample" in source else f"fingerprint {source.get('fingerprint')}"
    return f"{source['root']} ({what})"


def check_source(store_dir: Path, made_from: dict, source: dict) -> None:
    """Refuses a store made from other images than data.root's; says so in one line when data.root is a copy
    (another path, the same listing) of what the store was made from."""
    if identity(source) != identity(made_from):
        raise StoreError(
            f"data.store_dir={store_dir} holds a store made from {describe_source(made_from)}, not from "
            f"data.root={describe_source(source)}: another dataset, or an image or class was added, removed, renamed "
            "or resized since. If the store is what you want to train on, train from it as it is with data.root "
            "unset (a data.root that does not exist: the store is then not compared), and check its bytes with "
            "verify=true. Otherwise prepare again: choose another data.store_dir (the default is one folder per "
            f"source and settings), or delete {store_dir}."
        )
    if source["root"] != made_from["root"]:
        print(
            f"data.root={source['root']} lists the same images (names and sizes) as {made_from['root']}, which "
            f"data.store_dir={store_dir} was made from: using the store as it is.",
            file=sys.stderr,
        )
