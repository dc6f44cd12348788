"""A complete store told in words (describe) and checked byte by byte against the checksums taken as it was
written (verify)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alexnet.data.identity import describe_source
from alexnet.data.pool import progress
from alexnet.data.settings import StoreSettings
from alexnet.data.store import DIFFERS, damaged_files, file_digest, image_digest, is_images, read_manifest


def describe(store_dir: str | Path, manifest: dict, limit: int = 20) -> str:
    """The preparation's summary: what the store holds, from what, and every file not used, with the reason."""
    settings, source = StoreSettings.from_manifest(manifest["settings"]), manifest["source"]
    lines = [
        f"store: {store_dir} ({settings.store_format}, {settings.image_size} px, version {manifest['store_version']})",
        f"source: {describe_source(source)}, {source['form']}; {manifest['num_classes']} classes",
    ]

    def listed(title: str, entries: list[dict]) -> None:
        if entries:
            lines.append(f"  {title}:")
            lines.extend(f"    {e['path']}: {e['reason']}" for e in entries[:limit])
            if len(entries) > limit:
                lines.append(f"    ... and {len(entries) - limit} more, all in {Path(store_dir) / 'manifest.json'}")

    for split, info in manifest["splits"].items():
        lines.append(f"  {split}: {info['images']} images, {len(info['skipped'])} skipped")
        listed(f"skipped in {split} (cannot be decoded; data.strict=true stops at them)", info["skipped"])
    listed("not read from data.root", manifest["layout_oddities"])
    return "\n".join(lines)


def verify(store_dir: str | Path, progress_bar: bool = True) -> list[str]:
    """Every byte of a complete store against the checksums taken when it was written: one line per file, chunk
    file or range of images that differs (none: the store is as prepared). A damaged manifest is a StoreError."""
    root = Path(store_dir)
    manifest = read_manifest(root)
    with progress(progress_bar, "verifying (bytes)", sum(e["size"] for e in manifest["files"].values())) as advance:
        damaged = damaged_files(root, manifest, advance)
        problems = [f"{name}: {what}" for name, what in damaged.items()]
        for name, entry in sorted(manifest["files"].items()):
            if name in damaged or not is_images(entry):
                continue
            if "xxh3" in entry:  # a JPEG chunk file
                if file_digest(root / name) != entry["xxh3"]:
                    slots = f" (slots {entry['slots'][0]}-{entry['slots'][1] - 1})" if "slots" in entry else ""
                    problems.append(f"{name}{slots}: {DIFFERS}")
            elif entry["image_digests"] in damaged:  # reported above, once: its images are not compared with it
                problems.append(
                    f"{name}: not checked image by image, since its digests file {entry['image_digests']} is damaged; "
                    "its size is as prepared"
                )
            else:
                problems.extend(_verify_images(root, name, root / entry["image_digests"]))
            advance(entry["size"])
    return problems


def _verify_images(root: Path, name: str, digests_file: Path, block: int = 64) -> list[str]:
    """The slot ranges of a raw images file whose bytes no longer match the digests taken as they were written.
    Read with plain reads into one buffer, not through a memory map: the pages of a mapped file count as the
    process's resident memory until the kernel needs them back (10.7 GB for a 20 GB store)."""
    path = root / name
    try:
        mapped, expected = np.load(path, mmap_mode="r"), np.load(digests_file)
    except ValueError as error:
        return [f"{name}: not a readable .npy any more ({error})"]
    count, shape, header = len(mapped), mapped.shape[1:], mapped.offset  # only the header was read
    del mapped
    per_slot = int(np.prod(shape))
    buffer = bytearray(block * per_slot)
    bad: list[int] = []
    with open(path, "rb", buffering=0) as f:
        f.seek(header)
        for start in range(0, count, block):
            n = min(block, count - start)
            view = memoryview(buffer)[: n * per_slot]
            if f.readinto(view) != len(view):
                return [f"{name}: shorter than its {count} slots"]
            images = np.frombuffer(view, np.uint8).reshape(n, *shape)
            bad.extend(slot for slot, pixels in enumerate(images, start) if image_digest(pixels) != expected[slot])
    ranges: list[list[int]] = []
    for slot in bad:
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1][1] = slot
        else:
            ranges.append([slot, slot])
    return [
        f"{name} (slots {a}-{b}, bytes {header + a * per_slot:,}-{header + (b + 1) * per_slot - 1:,}): "
        "the images differ from those prepared (checksum mismatch)"
        for a, b in ranges
    ]
