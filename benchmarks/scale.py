"""Cost at ILSVRC's scale (issue 22): the three official files made with 1,000 classes and a share of ILSVRC-2012's
1,281,167 training and 50,000 validation files, then, per scale: preparation (time, images/s, its phases, the
main process's and each worker's peak memory, the per-chunk cost of the progress bookkeeping at the start and at
the end), the manifest's size, opening the store, verify, and the time from starting train.py to its first
training step. The images are tiny (--source-size px JPEGs, a few distinct ones whose bytes are reused), so what
grows is the cost per file and per class; the cost per pixel at 256 px is measured apart (--memory-images).

    python benchmarks/scale.py                                  # 1% and 10% of ILSVRC, store at 67 px, 2 workers
    python benchmarks/scale.py --scales 0.01 0.1 1.0            # and the whole of it (~20 GB of disk at 67 px)
    python benchmarks/scale.py --before-src /tmp/base/src       # preparation also with an older src/, side by side
    python benchmarks/scale.py --classes 10 --scales 0.0002 --memory-images 16   # seconds: the smoke test

Memory is read from /proc: the main process's peak is its own VmHWM (the kernel's high-water mark of its resident
set), read as it finishes; a worker's is its VmHWM, read every 0.05 s while it lives (a worker idles until its pool
closes, so the last reading is its peak), beside its peak private memory (Private_Clean + Private_Dirty of
/proc/PID/smaps_rollup, sampled): a forked worker's resident set counts the main process's pages it shares,
its private memory is what it adds. verify's resident set is split into anonymous (RssAnon) and file pages
(RssFile: the memory-mapped store it reads), both sampled.

The store is made at --image-size 67 by default, the smallest input the network takes, so that train.py runs on
the same store (a narrow network, tests/narrow_train.py: fc6 and fc7 of 256 units, one batch of 8, on the CPU).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ILSVRC_TRAIN, ILSVRC_VAL, ILSVRC_CLASSES = 1_281_167, 50_000, 1000
CHUNK = 256


# ---- the dataset: ILSVRC's three files, tiny images ----


def encoded_jpegs(count: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """`count` distinct JPEGs of `size` (width, height): smooth colour gradients with noise, like a photo's
    statistics more than pure noise; encoded once, their bytes reused for every file."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    out = []
    for _ in range(count):
        base = rng.uniform(40, 215, 3) + 60 * np.stack([np.sin(3 * x + rng.uniform(0, 6)), np.cos(2 * y)], -1).sum(-1)[
            ..., None
        ] * rng.uniform(-1, 1, 3)
        pixels = np.clip(base + rng.normal(0, 15, (height, width, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_300_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))


def make_ilsvrc(root: Path, classes: int, train: int, val: int, jpegs: list[bytes], seed: int = 0) -> None:
    """ILSVRC2012_img_train.tar (a tar of one <wnid>.tar per class), ILSVRC2012_img_val.tar (flat) and
    ILSVRC2012_devkit_t12.tar.gz (meta.mat with shuffled ILSVRC2012_IDs, and the validation ground truth), as
    alexnet.data.layout reads them. `train` files spread evenly over the classes (at least one each)."""
    from alexnet.data.layout import DEVKIT_NAME, GROUND_TRUTH, META, TRAIN_ARCHIVE, VAL_ARCHIVE
    from alexnet.data.sample import _meta_mat, wnid

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = max(train, classes)
    counts = [train // classes + (c < train % classes) for c in range(classes)]
    with tarfile.open(root / TRAIN_ARCHIVE, "w:", format=tarfile.USTAR_FORMAT) as outer:
        for c, count in enumerate(counts):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.USTAR_FORMAT) as inner:
                for i in range(count):
                    _add(inner, f"{wnid(c)}_{i}.JPEG", jpegs[(c + i) % len(jpegs)])
            _add(outer, f"{wnid(c)}.tar", buffer.getvalue())
    labels = rng.permutation(np.arange(val) % classes)
    with tarfile.open(root / VAL_ARCHIVE, "w:", format=tarfile.USTAR_FORMAT) as tar:
        for n in range(val):
            _add(tar, f"ILSVRC2012_val_{n + 1:08d}.JPEG", jpegs[n % len(jpegs)])
    meta, ids = _meta_mat(classes, rng)
    truth = "".join(f"{ids[label]}\n" for label in labels).encode()
    with tarfile.open(root / f"{DEVKIT_NAME}.tar.gz", "w:gz") as tar:
        _add(tar, f"{DEVKIT_NAME}/{META}", meta)
        _add(tar, f"{DEVKIT_NAME}/{GROUND_TRUTH}", truth)


# ---- memory, from /proc ----


def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of a process in KiB ({} once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("Vm", "Rss")))
    except (OSError, ValueError):
        return {}
    return {key: int(value.split()[0]) for key, value in fields.items() if value.strip().endswith("kB")}


def _private(pid: int) -> int:
    """Private_Clean + Private_Dirty in KiB: the pages only this process maps."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty")))
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Monitor(threading.Thread):
    """Samples a process and its children every `interval` s: each one's peaks (KiB) and when it was first seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.stopped = pid, interval, threading.Event()
        self.peaks: dict[int, dict[str, float]] = {}

    def run(self) -> None:
        while not self.stopped.is_set():
            for pid in [self.pid, *_children(self.pid)]:
                status = _status(pid)
                if not status:
                    continue
                peak = self.peaks.setdefault(pid, {"first_seen": time.time()})
                for key in ("VmHWM", "RssAnon", "RssFile"):
                    peak[key] = max(peak.get(key, 0), status.get(key, 0))
                if pid != self.pid:
                    peak["private"] = max(peak.get("private", 0), _private(pid))
            self.stopped.wait(self.interval)

    def workers(self) -> list[dict[str, float]]:
        return [peak for pid, peak in self.peaks.items() if pid != self.pid]

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()


def _run_child(task: dict, src: Path, timeout: float = 7200) -> tuple[dict, Monitor]:
    """This file's child() in a process of its own, importing alexnet from `src`, watched by a Monitor."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(Path(__file__).parent)])}
    command = [sys.executable, __file__, "--child", json.dumps(task)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with Monitor(process.pid) as monitor:
        out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{task['kind']} failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), monitor


def child(task: dict) -> None:
    """In its own process: prepare or verify, timed by phase; prints one JSON line."""
    import alexnet.data.prepare as prepare_module

    started = time.perf_counter()
    result: dict = {}
    if task["kind"] == "verify":
        try:
            from alexnet.data.verify import verify
        except ImportError:  # a revision before prepare.py was split by role
            verify = prepare_module.verify
        problems = verify(task["store"], progress_bar=False)
        result.update(problems=len(problems))
    else:
        phases: dict[str, float] = {}

        def timed(name, function):
            def wrapper(*args, **kwargs):
                phases[f"{name}_at"] = time.time()
                began = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - began

            return wrapper

        prepare_module.discover = timed("discover", prepare_module.discover)
        # the names prepare() calls them by: after prepare.py was split by role, then before
        stats_name = "statistics" if hasattr(prepare_module, "statistics") else "_statistics"
        record_name = next((name for name in ("record_chunk", "_record_chunk") if hasattr(prepare_module, name)), None)
        setattr(prepare_module, stats_name, timed("statistics", getattr(prepare_module, stats_name)))
        records: list[float] = []
        if record_name is not None:  # an append per chunk (progress.jsonl)
            record = getattr(prepare_module, record_name)

            def recorded(*args):
                began = time.perf_counter()
                record(*args)
                records.append(time.perf_counter() - began)

            setattr(prepare_module, record_name, recorded)
        else:  # before: progress.json rewritten whole per chunk (its first write is the header, before any chunk)
            write = prepare_module.atomic_write_json

            def written(path, data):
                began = time.perf_counter()
                write(path, data)
                if Path(path).name == "progress.json":
                    records.append(time.perf_counter() - began)

            prepare_module.atomic_write_json = written
        prepare_module.prepare(
            task["root"],
            task["store"],
            image_size=task["image_size"],
            workers=task["workers"],
            chunk_size=task["chunk_size"],
            progress_bar=False,
            store_format=task["format"],
        )
        if record_name is None:
            records = records[1:]
        tenth = max(1, len(records) // 10)
        result.update(
            phases,
            records=len(records),
            record_first_ms=1000 * statistics.median(records[:tenth]) if records else 0.0,
            record_last_ms=1000 * statistics.median(records[-tenth:]) if records else 0.0,
            record_total_s=sum(records),
        )
    result.update(seconds=time.perf_counter() - started, hwm_kib=_status(os.getpid())["VmHWM"])
    print(json.dumps(result))


# ---- the start of training ----


def first_batch_timer(path: str):
    """A Lightning callback (made here so that importing this file needs no Lightning) that writes the wall-clock
    time of the first training batch to `path`."""
    import lightning as L

    class FirstBatchTime(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not Path(path).exists():
                Path(path).write_text(f"{time.time()}\n")

    return FirstBatchTime()


def train_start(root: Path, store: Path, classes: int, image_size: int, work: Path) -> float:
    """Seconds from starting train.py (narrow fc6/fc7, CPU, one batch of 8) on a prepared store to its first step."""
    stamp = work / "first_batch.txt"
    stamp.unlink(missing_ok=True)
    overrides = [
        "experiment=full",
        "trainer=cpu",
        f"data.root={root}",
        f"data.store_dir={store}",
        f"data.image_size={image_size}",
        f"data.crop_size={image_size}",
        f"model.num_classes={classes}",
        "data.batch_size=8",
        "data.eval_batch_size=8",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "+trainer.enable_model_summary=false",
        "evaluate=false",
        "logger=csv",
        "callbacks.progress=null",
        f"hydra.run.dir={work / 'run'}",
        "+callbacks.first_batch._target_=scale.first_batch_timer",
        f"+callbacks.first_batch.path={stamp}",
    ]
    paths = [str(ROOT / "src"), str(ROOT / "tests"), str(Path(__file__).parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "WANDB_MODE": "offline"}
    started = time.time()
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "narrow_train.py"), *overrides],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0 or not stamp.exists():
        raise RuntimeError(f"train.py failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    shutil.rmtree(work / "run", ignore_errors=True)
    return float(stamp.read_text()) - started


# ---- one scale ----


def _mib(kib: float) -> float:
    return kib / 1024


def prepare_with_peaks(args, root: Path, store: Path, image_size: int, src: Path) -> tuple[dict, dict[str, dict]]:
    """Preparation of `root` into `store` by the code under `src`, in a child process, and each phase's worker
    peaks: "chunks" (decoding and writing) and "statistics" (workers first seen after the statistics began),
    each {"VmHWM": MiB, "private": MiB}."""
    task = dict(
        kind="prepare",
        root=str(root),
        store=str(store),
        image_size=image_size,
        workers=args.workers,
        chunk_size=CHUNK,
        format=args.format,
    )
    result, monitor = _run_child(task, src)
    stats_at = result.get("statistics_at", float("inf"))
    phases: dict[str, list[dict]] = {"chunks": [], "statistics": []}
    for worker in monitor.workers():
        phases["chunks" if worker["first_seen"] < stats_at else "statistics"].append(worker)
    peaks = {
        phase: {key: _mib(max((w.get(key, 0) for w in workers), default=0)) for key in ("VmHWM", "private")}
        for phase, workers in phases.items()
    }
    return result, peaks


def measure_scale(args, fraction: float, work: Path, srcs: dict[str, Path]) -> dict:
    from alexnet.data.prepare import prepare
    from alexnet.data.store import Store

    train, val = max(round(ILSVRC_TRAIN * fraction), args.classes), max(round(ILSVRC_VAL * fraction), 1)
    root, out = work / f"ilsvrc-{fraction:g}", {"fraction": fraction, "train": train, "val": val}
    began = time.perf_counter()
    make_ilsvrc(root, args.classes, train, val, encoded_jpegs(16, (args.source_size, args.source_size)))
    out["dataset_s"] = time.perf_counter() - began
    out["dataset_mb"] = sum(p.stat().st_size for p in root.iterdir()) / 1e6
    print(f"[{fraction:g}] dataset: {train:,} + {val:,} files in {out['dataset_s']:.0f} s", file=sys.stderr)
    for name, src in srcs.items():
        store = work / f"store-{fraction:g}-{name}"
        result, peaks = prepare_with_peaks(args, root, store, args.image_size, src)
        result["worker_hwm_mib"] = peaks["chunks"]["VmHWM"]
        result["worker_private_mib"] = peaks["chunks"]["private"]
        result["stats_worker_hwm_mib"] = peaks["statistics"]["VmHWM"]
        result["stats_worker_private_mib"] = peaks["statistics"]["private"]
        out[name] = result
        print(f"[{fraction:g}] prepare ({name}): {result['seconds']:.1f} s", file=sys.stderr)
        if name != "after":
            shutil.rmtree(store)
    store = work / f"store-{fraction:g}-after"
    out["store_mb"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6
    out["manifest_kb"] = (store / "manifest.json").stat().st_size / 1e3
    opens = []
    for _ in range(5):
        began = time.perf_counter()
        Store.open(store)
        opens.append(time.perf_counter() - began)
    out["open_ms"] = 1000 * statistics.median(opens)
    checks = []
    for _ in range(3):  # what every training run's prepare_data does with a complete store
        began = time.perf_counter()
        prepare(root, store, image_size=args.image_size, progress_bar=False, store_format=args.format)
        checks.append(time.perf_counter() - began)
    out["reuse_ms"] = 1000 * statistics.median(checks)
    if not args.no_verify:
        result, monitor = _run_child({"kind": "verify", "store": str(store)}, srcs["after"])
        assert result["problems"] == 0, result
        main = monitor.peaks.get(monitor.pid, {})
        out["verify"] = {
            "seconds": result["seconds"],
            "hwm_mib": _mib(result["hwm_kib"]),
            "anon_mib": _mib(main.get("RssAnon", 0)),
            "file_mib": _mib(main.get("RssFile", 0)),
        }
        print(f"[{fraction:g}] verify: {result['seconds']:.1f} s", file=sys.stderr)
    if not args.no_train and args.image_size >= 67:
        out["train_start_s"] = train_start(root, store, args.classes, args.image_size, work)
        print(f"[{fraction:g}] train.py to its first step: {out['train_start_s']:.1f} s", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(root)
        shutil.rmtree(store)
    return out


# ---- 256 px: a worker's memory, and the bookkeeping per chunk ----


def memory_at_256(args, work: Path, srcs: dict[str, Path]) -> dict:
    """Preparation of --memory-images real 256x256 images (500x375 JPEGs, as ILSVRC's typical photo) at
    image_size 256, with the workers' peaks split into the chunks' phase and the statistics' phase."""
    root = work / "ilsvrc-256"
    make_ilsvrc(root, 2, args.memory_images, 2, encoded_jpegs(8, (500, 375), seed=1))
    out = {}
    for name, src in srcs.items():
        store = work / f"store-256-{name}"
        result, peaks = prepare_with_peaks(args, root, store, 256, src)
        out[name] = {
            "seconds": result["seconds"],
            "main_hwm_mib": _mib(result["hwm_kib"]),
            **{f"{phase}_{key}": peak[key] for phase, peak in peaks.items() for key in ("VmHWM", "private")},
        }
        shutil.rmtree(store)
    shutil.rmtree(root)
    return out


def bookkeeping(work: Path, chunks: int, repeats: int = 20) -> dict:
    """Per-chunk cost of recording a chunk as done, with `chunks_done` chunks recorded before it, in one process:
    before, progress.json rewritten whole (atomic_write_json: temporary, fsync, rename) with every chunk done so
    far; after, one line appended to progress.jsonl and fsynced. The records are a JPEG store's (a checksum per
    chunk, the larger of the two formats' records)."""
    from alexnet.base.atomic import atomic_write_json
    from alexnet.data.chunks import record_chunk

    def checksum(chunk):
        return {"size": 5_123_456, "xxh3": f"{chunk:032x}", "slots": [chunk * CHUNK, (chunk + 1) * CHUNK]}

    out = {}
    for done in (0, chunks // 2, chunks - repeats):
        folder = work / f"book-{done}"
        folder.mkdir()
        progress = {"listing": "0" * 64, "source": {"root": str(work), "fingerprint": "0" * 16}, "settings": {}}
        progress |= {"done": {"train": list(range(done)), "val": []}, "skipped": {"train": [], "val": []}}
        progress["chunks"] = {"train": {str(c): checksum(c) for c in range(done)}, "val": {}}
        before = []
        for chunk in range(done, done + repeats):
            began = time.perf_counter()
            progress["done"]["train"].append(chunk)
            progress["chunks"]["train"][str(chunk)] = checksum(chunk)
            atomic_write_json(folder / "progress.json", progress)
            before.append(time.perf_counter() - began)
        log = folder / "progress.jsonl"
        with open(log, "w") as f:  # the log as it stands after `done` chunks
            f.writelines(
                json.dumps(
                    {"split": "train", "chunk": c, "skipped": [], "checksum": checksum(c)}, separators=(",", ":")
                )
                + "\n"
                for c in range(done)
            )
        after = []
        for chunk in range(done, done + repeats):
            began = time.perf_counter()
            record = {"split": "train", "chunk": chunk, "skipped": [], "checksum": checksum(chunk)}
            record_chunk(folder, record)
            after.append(time.perf_counter() - began)
        out[done] = {
            "before_ms": 1000 * statistics.median(before),
            "after_ms": 1000 * statistics.median(after),
            "progress_kb": (folder / "progress.json").stat().st_size / 1e3,
        }
        shutil.rmtree(folder)
    return out


# ---- report ----


def report(args, scales: list[dict], memory: dict | None, book: dict | None, srcs: dict) -> None:
    load = os.getloadavg()
    print(
        f"scale.py: {args.classes} classes, source JPEGs {args.source_size}x{args.source_size}, store {args.format} at "
        f"{args.image_size} px, {args.workers} workers, chunks of {CHUNK}; {os.cpu_count()} cores, load average at the "
        f"end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; {time.strftime('%Y-%m-%d')}"
    )
    if scales:
        before = "before" in srcs
        heads = [f"{s['fraction']:.3g} ({s['train'] + s['val']:,} files)" for s in scales]
        print()
        print("| measurement | " + " | ".join(heads) + " | per million files (last two scales) |")
        print("|---|" + "---:|" * (len(scales) + 1))
        files = [s["train"] + s["val"] for s in scales]

        def row(title: str, values: list[float | None], fmt: str, unit: str = "", slope: bool = True) -> None:
            cells = ["" if v is None else format(v, fmt) for v in values]
            per = ""
            if slope and len(values) >= 2 and None not in values[-2:] and files[-1] != files[-2]:
                per = format((values[-1] - values[-2]) / (files[-1] - files[-2]) * 1e6, fmt) + unit
            print(f"| {title} | " + " | ".join(cells) + f" | {per} |")

        for name in ("before", "after") if before else ("after",):
            tag = f" ({name})" if before else ""
            get = [s[name] for s in scales]
            row(f"preparation, s{tag}", [r["seconds"] for r in get], ",.1f", " s")
            row(
                f"preparation, images/s{tag}",
                [(s["train"] + s["val"]) / s[name]["seconds"] for s in scales],
                ",.0f",
                slope=False,
            )
            row(f"  discovery (tar headers), s{tag}", [r.get("discover", 0) for r in get], ",.1f", " s")
            row(f"  statistics (mean, PCA), s{tag}", [r.get("statistics", 0) for r in get], ",.1f", " s")
            row(f"  progress bookkeeping, all chunks, s{tag}", [r["record_total_s"] for r in get], ",.2f", " s")
            row(
                f"  bookkeeping per chunk, first 10% of chunks, ms{tag}",
                [r["record_first_ms"] for r in get],
                ".2f",
                slope=False,
            )
            row(
                f"  bookkeeping per chunk, last 10% of chunks, ms{tag}",
                [r["record_last_ms"] for r in get],
                ".2f",
                slope=False,
            )
            row(f"main process peak RSS, MiB{tag}", [_mib(r["hwm_kib"]) for r in get], ",.0f", " MiB")
            workers = (
                ("worker peak RSS, chunks", "worker_hwm_mib"),
                ("  worker peak private, chunks", "worker_private_mib"),
                ("worker peak RSS, statistics", "stats_worker_hwm_mib"),
                ("  worker peak private, statistics", "stats_worker_private_mib"),
            )
            for label, key in workers:  # a worker's pages shared with the main process, and its own
                row(f"{label}, MiB{tag}", [r[key] for r in get], ",.0f", " MiB", slope=False)
        row("store on disk, MB", [s["store_mb"] for s in scales], ",.0f", " MB")
        row("manifest.json, KB", [s["manifest_kb"] for s in scales], ",.1f", " KB")
        row("Store.open, ms", [s["open_ms"] for s in scales], ",.1f", " ms")
        row("prepare() on the complete store (each run's check), ms", [s["reuse_ms"] for s in scales], ",.1f", " ms")
        if all("verify" in s for s in scales):
            row("verify, s", [s["verify"]["seconds"] for s in scales], ",.1f", " s")
            row("verify peak RSS, MiB", [s["verify"]["hwm_mib"] for s in scales], ",.0f", " MiB")
            row("  of it anonymous (sampled), MiB", [s["verify"]["anon_mib"] for s in scales], ",.0f", " MiB")
            row(
                "  of it file pages, the mapped store (sampled), MiB", [s["verify"]["file_mib"] for s in scales], ",.0f"
            )
        if all("train_start_s" in s for s in scales):
            row("train.py start to first training step, s", [s["train_start_s"] for s in scales], ",.1f", " s")
        gen = ", ".join(f"{s['dataset_mb']:,.0f} MB in {s['dataset_s']:.0f} s" for s in scales)
        print(f"\nthe three files written per scale: {gen}")
        if len(scales) >= 2:
            ratio = files[-1] / files[0]
            growth = scales[-1]["after"]["seconds"] / scales[0]["after"]["seconds"]
            print(f"files x{ratio:.1f} from the first to the last scale: preparation time x{growth:.1f}")
    if memory:
        names = list(memory)
        print(f"\n256 px, {args.memory_images} images of 500x375 ({args.workers} workers, chunks of {CHUNK}):\n")
        print("| per process, peak | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for key, title in [
            ("chunks_VmHWM", "worker RSS, decoding and writing chunks, MiB"),
            ("chunks_private", "worker private, decoding and writing chunks, MiB"),
            ("statistics_VmHWM", "worker RSS, statistics, MiB"),
            ("statistics_private", "worker private, statistics, MiB"),
            ("main_hwm_mib", "main process RSS, MiB"),
            ("seconds", "preparation, s"),
        ]:
            print(f"| {title} | " + " | ".join(f"{memory[n][key]:,.1f}" for n in names) + " |")
    if book:
        print(f"\nrecording one chunk as done, after N chunks (a JPEG store's records; {book['chunks']:,} chunks is")
        print("ILSVRC-2012 in chunks of 256), medians of 20:\n")
        print("| chunks done N | progress.json size | before: rewrite progress.json, ms | after: append a line, ms |")
        print("|---:|---:|---:|---:|")
        points = {k: v for k, v in book.items() if k != "chunks"}
        for done, cost in points.items():
            print(f"| {done:,} | {cost['progress_kb']:,.0f} KB | {cost['before_ms']:.2f} | {cost['after_ms']:.2f} |")
        first, last = points[min(points)], points[max(points)]
        n = book["chunks"]
        before, after = (n * (first[key] + last[key]) / 2e3 for key in ("before_ms", "after_ms"))
        print(f"whole store ({n:,} chunks, cost linear in N): before ~{before:.0f} s, after ~{after:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="*", default=[0.01, 0.1], help="shares of ILSVRC's files")
    parser.add_argument("--classes", type=int, default=ILSVRC_CLASSES)
    parser.add_argument("--image-size", type=int, default=67, help="the store's; >= 67 to time train.py")
    parser.add_argument("--source-size", type=int, default=8, help="side of the tiny source JPEGs")
    parser.add_argument("--workers", type=int, default=2, help="preparation workers")
    parser.add_argument("--format", default="raw", choices=["raw", "jpeg"])
    parser.add_argument("--memory-images", type=int, default=1024, help="images at 256 px; 0: not measured")
    parser.add_argument("--book-chunks", type=int, default=5201, help="bookkeeping: chunks of the whole store; 0: off")
    parser.add_argument("--before-src", type=Path, default=None, help="also prepare with this src/ (e.g. main's)")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the datasets and stores")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder under /tmp")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = parser.parse_args()
    sys.path.insert(
        0, str(ROOT / "src")
    )  # this tree's package, as its children and train.py get (not an installed one)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="alexnet-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    srcs = {"after": ROOT / "src"}
    if args.before_src:
        srcs = {"before": args.before_src.resolve(), **srcs}
    book = None
    if args.book_chunks:
        book = {"chunks": args.book_chunks, **bookkeeping(work, args.book_chunks)}
    memory = memory_at_256(args, work, srcs) if args.memory_images else None
    scales = [measure_scale(args, fraction, work, srcs) for fraction in args.scales]
    if args.json:
        args.json.write_text(json.dumps({"scales": scales, "memory": memory, "bookkeeping": book}, indent=1))
    report(args, scales, memory, book, srcs)
    if args.work_dir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
