"""A store written by an earlier version of this code brought to this version in place, without decoding."""

from __future__ import annotations

from pathlib import Path

from alexnet.data.chunks import store_lock
from alexnet.data.identity import identity, listing
from alexnet.data.layout import discover, source_fingerprint
from alexnet.data.store import (
    MANIFEST_CHECKSUM,
    RESTORE,
    STORE_VERSION,
    UPGRADABLE,
    StoreError,
    contradictions,
    file_digest,
    load_json,
    manifest_path,
    read_manifest,
    store_problems,
    write_manifest,
)


def upgrade(store_dir: str | Path, root: str | Path | None = None) -> str:
    """Brings a store written by an earlier version of this code to this version in place, decoding nothing, and
    says in one line what it did. Its files are checked first (small ones by content, images by size); the source's
    listing (this version's identity) is recorded from data.root, after checking that data.root holds the items,
    with their labels and in their order, that the store's slots were assigned from; then the manifest is rewritten,
    with its own checksum and the checksum of the manifest it replaces (a run trained on the store resumes on it).
    Without data.root there, no listing is recorded: the store is then used where data.root is unset and refused
    where it is set, until upgraded again with it."""
    store_dir = Path(store_dir)
    path = manifest_path(store_dir)
    if not path.is_file():
        raise StoreError(f"No complete store in data.store_dir={store_dir} (no manifest.json): nothing to upgrade.")
    with store_lock(store_dir):
        manifest = load_json(path)
        version = manifest.get("store_version") if isinstance(manifest, dict) else None
        if not isinstance(manifest, dict) or version == STORE_VERSION or MANIFEST_CHECKSUM in manifest:
            manifest = read_manifest(store_dir)  # checks it as any open does
            if identity(manifest["source"]) is not None:
                return f"data.store_dir={store_dir} is a store of version {STORE_VERSION} already: nothing to do."
        elif version not in UPGRADABLE:
            raise StoreError(
                f"The store in {store_dir} has version {version}, which cannot be upgraded to version {STORE_VERSION}: "
                "prepare it again into an empty data.store_dir."
            )
        problems = contradictions(manifest) or store_problems(store_dir, manifest)
        if problems:
            raise StoreError(
                f"The store in {store_dir} is damaged ({'; '.join(problems[:5])}), so it is not upgraded. {RESTORE}"
            )
        source, said = _upgraded_source(manifest["source"], root)
        if version != STORE_VERSION:
            earlier = {"store_version": version, "manifest_xxh3": file_digest(path)}
            manifest = {**manifest, "store_version": STORE_VERSION, "upgraded_from": earlier}
        write_manifest(store_dir, {**manifest, "source": source})
    return f"data.store_dir={store_dir} upgraded to version {STORE_VERSION} (no image decoded): {said}"


def _upgraded_source(made_from: dict, root: str | Path | None) -> tuple[dict, str]:
    """The source as this version records it, and what was recorded, in words."""
    if "sample" in made_from:
        return made_from, "its source is a sample spec, which this version records as before."
    root = Path(root if root is not None else made_from["root"])
    if not root.is_dir():
        return {**made_from, "fingerprint": None}, (
            f"data.root={root} is not there, so its listing is not recorded: the store is used where data.root is "
            "unset, and refused where it is set until upgraded again with it."
        )
    if listing(discover(root)) != made_from["listing"]:
        raise StoreError(
            f"data.root={root} does not hold the images (names, labels, order) that the store was made from "
            f"({made_from['root']}): not upgraded. Give the data.root it was made from, or none (the store is then "
            "used where data.root is unset)."
        )
    return {**made_from, "root": str(root.resolve()), **source_fingerprint(root)}, (
        f"the listing of data.root={root} (names and sizes) is recorded as its source."
    )
