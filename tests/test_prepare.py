"""Section 2's preprocessing into the store: messy files, statistics, resuming, refusing the wrong store."""

import contextlib
import errno
import faulthandler
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image

from alexnet.data import chunks as chunks_module
from alexnet.data import prepare as prepare_module
from alexnet.data import space, stats
from alexnet.data.identity import describe_source, listing
from alexnet.data.layout import discover
from alexnet.data.pool import pool_map
from alexnet.data.prepare import prepare
from alexnet.data.preprocess import RESIZE, UnreadableImageError, load_image
from alexnet.data.sample import SampleSpec, make_sample
from alexnet.data.settings import StoreSettings
from alexnet.data.store import Store, StoreError, write_manifest
from alexnet.data.verify import _verify_images, describe, verify
from fast_run import ROOT


def noise_image(size, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(500, 375), (300, 600), (257, 256), (120, 90), (2000, 100)])
def test_load_image_equals_torchvision_resize_256_and_centre_crop(tmp_path, size):
    path = tmp_path / "x.png"  # PNG: no JPEG draft decoding, so the comparison is exact
    noise_image(size).save(path)
    expected = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(256)])(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(load_image(path), expected)


def test_messy_files_are_converted(tmp_path):
    colour = (200, 40, 60)
    Image.new("RGB", (400, 300), colour).convert("CMYK").save(tmp_path / "cmyk.JPEG", "JPEG", quality=95)
    Image.new("RGB", (300, 400), colour).save(tmp_path / "png.JPEG", "PNG")  # a PNG named .JPEG
    Image.new("L", (300, 300), 90).save(tmp_path / "gray.JPEG", "JPEG", quality=95)
    Image.new("RGBA", (300, 300), (*colour, 100)).save(tmp_path / "alpha.png")
    for name in ("cmyk.JPEG", "png.JPEG", "alpha.png"):
        pixels = load_image(tmp_path / name)
        assert pixels.shape == (256, 256, 3) and pixels.dtype == np.uint8
        assert np.abs(pixels.reshape(-1, 3).mean(0) - colour).max() < 4, name
    gray = load_image(tmp_path / "gray.JPEG")
    assert gray.shape == (256, 256, 3) and np.abs(gray.astype(int) - 90).max() <= 2


def test_jpeg_draft_decoding_stays_close_to_a_full_decode(tmp_path):
    path = tmp_path / "big.JPEG"
    noise_image((1200, 900), seed=3).resize((300, 225)).resize((1200, 900)).save(path, quality=95)
    full = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(256)])(Image.open(path).convert("RGB")), dtype=float)
    assert np.abs(load_image(path).astype(float) - full).mean() < 3.0


def test_store_lists_the_unreadable_file_and_keeps_the_rest(sample_store, sample_root):
    store = Store.open(sample_store)
    train = store.manifest["splits"]["train"]
    assert train["slots"] == 36 and train["images"] == 35
    assert [s["path"] for s in train["skipped"]] == ["train/n09000035/n09000035_1.JPEG"]
    assert train["skipped"][0]["reason"]
    assert store.manifest["splits"]["val"] == {"images": 18, "slots": 18, "skipped": []}
    labels = store.labels("train")
    assert (labels == -1).sum() == 1 and store.images("train").shape == (36, 256, 256, 3)
    # its slot holds zeros: a store's bytes are defined everywhere, unread slots included
    assert not np.asarray(store.images("train")[labels == -1]).any()
    assert store.class_names[0] == "sample class 0"


def test_strict_mode_stops_at_the_unreadable_file_with_its_path(sample_root, tmp_path):
    with pytest.raises(UnreadableImageError, match=r"n09000035_1\.JPEG.*data\.strict=false"):
        prepare(sample_root, tmp_path / "store", workers=1, strict=True, progress_bar=False)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_mean_image_and_pca_equal_numpy_on_the_same_pixels(sample_store):
    store = Store.open(sample_store)
    keep = store.labels("train") >= 0
    images = np.asarray(store.images("train"))[keep].astype(np.float64)
    np.testing.assert_allclose(store.mean, images.mean(axis=0), rtol=1e-6, atol=1e-4)
    covariance = np.cov((images.reshape(-1, 3) / 255.0).T)
    eigval, eigvec = np.linalg.eigh(covariance)
    np.testing.assert_allclose(store.eigval, eigval[::-1], rtol=1e-5)
    for i in range(3):  # eigenvectors up to sign
        assert abs(abs(float(store.eigvec[:, i] @ eigvec[:, 2 - i])) - 1) < 1e-5
    np.testing.assert_allclose(store.manifest["mean_rgb"], images.reshape(-1, 3).mean(axis=0), rtol=1e-6)
    # one sign per eigenvector (components summing to >= 0), so that a seeded lighting noise is the same everywhere
    assert (store.eigvec.sum(axis=0) >= 0).all()


def test_the_manifest_records_the_classes_and_the_items_the_slots_were_assigned_from(sample_store, sample_root):
    manifest, layout = Store.open(sample_store).manifest, discover(sample_root)
    assert manifest["settings"] == {"image_size": 256, "resize": RESIZE}
    assert manifest["wnids"] == layout.wnids and manifest["num_classes"] == 6
    assert manifest["source"]["listing"] == listing(layout)
    assert manifest["source"]["form"] == "flat val with devkit"


def test_each_eigenvector_is_signed_so_that_its_components_sum_to_at_least_zero(tmp_path):
    """Pixels drawn around known principal axes, whose components sum to 1.70, 0.25 and 0.22: a sign fixed by
    the basis' rows instead (the second sums below 0), or by a sum below another bound, would differ."""
    rounded = np.array([[0.48, -0.01, 0.88], [0.72, -0.57, -0.39], [0.5, 0.82, -0.27]])
    u, _, vt = np.linalg.svd(rounded)
    axes = u @ vt  # the nearest orthonormal basis
    assert (axes.sum(axis=0) > 0.2).all() and axes.sum(axis=1)[1] < -0.2
    variances = np.array([0.02, 0.006, 0.0005])
    noise = np.random.default_rng(0).normal(size=(32 * 64 * 64, 3)) * np.sqrt(variances)
    pixels = np.clip(np.round((0.5 + noise @ axes.T) * 255), 0, 255).astype(np.uint8)
    np.save(tmp_path / "train_images.npy", pixels.reshape(32, 64, 64, 3))
    np.save(tmp_path / "train_labels.npy", np.zeros(32, np.int16))
    _, eigval, eigvec = stats.statistics(tmp_path, StoreSettings(64), 1, False)
    np.testing.assert_allclose(eigval, variances, rtol=0.05)
    np.testing.assert_allclose(eigvec, axes, atol=0.1)


def test_the_pca_of_a_few_pixels_is_numpys_sample_covariance_with_its_n_minus_1(tmp_path):
    """128 pixels: a divisor off by one pixel moves the eigenvalues by 1 in 127, not by 1 in millions."""
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "train_images.npy", pixels)
    np.save(tmp_path / "train_labels.npy", np.zeros(2, np.int16))
    mean, eigval, _ = stats.statistics(tmp_path, StoreSettings(8), 1, False)
    expected = np.linalg.eigvalsh(np.cov(pixels.reshape(-1, 3).T / 255.0))[::-1]
    np.testing.assert_allclose(eigval, expected, rtol=1e-10)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)


def test_store_settings_read_from_a_manifest_are_those_it_was_written_with():
    for settings in (StoreSettings(64, "jpeg", 8), StoreSettings(32, "jpeg"), StoreSettings(256)):
        assert StoreSettings.from_manifest(settings.as_manifest()) == settings
    # the manifest's own words, which stores already written hold: a store is reused only if they match
    assert StoreSettings(256).as_manifest() == {"image_size": 256, "resize": RESIZE}
    assert StoreSettings(64, "jpeg", 8).as_manifest() == {
        "image_size": 64,
        "resize": RESIZE,
        "format": "jpeg",
        "quality": 90,
        "chunk_size": 8,
    }


def test_statistics_do_not_depend_on_how_the_training_images_are_cut_into_chunks(jpeg_store):
    """One image per chunk: each chunk of one readable image, and the skipped image's chunk of none."""
    store = Store.open(jpeg_store)
    mean, eigval, eigvec = stats.statistics(
        jpeg_store, StoreSettings.from_manifest(store.manifest["settings"]), workers=1, progress_bar=False, chunk_size=1
    )
    np.testing.assert_allclose(mean, store.mean, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(eigval, store.eigval, rtol=1e-6)
    np.testing.assert_allclose(eigvec, store.eigvec, atol=1e-6)


def test_complete_store_is_reused_without_touching_it(sample_root, sample_store):
    before = {p.name: p.stat().st_mtime_ns for p in sample_store.iterdir()}
    manifest = prepare(sample_root, sample_store, workers=1, progress_bar=False)
    assert manifest["splits"]["train"]["images"] == 35
    assert {p.name: p.stat().st_mtime_ns for p in sample_store.iterdir()} == before


def test_a_complete_store_is_used_where_data_root_is_not_there(sample_store, tmp_path):
    """A training node may hold the store and not the dataset."""
    manifest = prepare(tmp_path / "no_dataset_here", sample_store, workers=1, progress_bar=False)
    assert manifest == Store.open(sample_store).manifest


def test_a_store_is_made_in_folders_that_do_not_exist_yet(sample_root, sample_store, tmp_path):
    store = tmp_path / "not" / "yet" / "store"
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert files_of(store) == files_of(sample_store)


def test_a_store_that_another_job_completed_from_another_source_while_this_one_waited_is_refused(tmp_path, monkeypatch):
    a, b = tiny_sample(tmp_path / "a", seed=1), tiny_sample(tmp_path / "b", seed=2)
    made_from_a = tmp_path / "from_a"
    prepare(a, made_from_a, image_size=32, workers=1, progress_bar=False)
    store, real = tmp_path / "store", chunks_module.exclusive

    @contextlib.contextmanager
    def the_other_job_finishes_first(lock_path, what):
        with real(lock_path, what):
            shutil.copytree(made_from_a, store, dirs_exist_ok=True)
            yield

    monkeypatch.setattr(chunks_module, "exclusive", the_other_job_finishes_first)
    with pytest.raises(StoreError, match=rf"made from {re.escape(str(a))} .*not from data\.root={re.escape(str(b))}"):
        prepare(b, store, image_size=32, workers=1, progress_bar=False)
    assert all_files_of(store) == all_files_of(made_from_a)


def test_store_with_other_settings_is_refused(sample_root, sample_store):
    with pytest.raises(StoreError, match=r"data\.store_dir=.*other settings"):
        prepare(sample_root, sample_store, image_size=128, workers=1, progress_bar=False)


def test_store_of_another_version_is_refused(sample_store, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    manifest = json.loads((sample_store / "manifest.json").read_text())
    manifest["store_version"] = 0
    write_manifest(copy, manifest)  # with its checksum, as a store of another version has
    with pytest.raises(StoreError, match="version 0"):
        Store.open(copy)


def test_non_empty_folder_without_a_store_is_refused(sample_root, tmp_path):
    (tmp_path / "someone_elses.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not empty"):
        prepare(sample_root, tmp_path, workers=1, progress_bar=False)
    assert (tmp_path / "someone_elses.txt").read_text() == "keep me"


def files_of(store):
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


def prepare_killed_after(chunks, monkeypatch, root, store, **kwargs):
    """prepare() stopped as by a kill (KeyboardInterrupt) once `chunks` chunks are written."""
    real = prepare_module.process_chunk
    calls = {"n": 0}

    def dies_after_some_chunks(task):
        calls["n"] += 1
        if calls["n"] > chunks:
            raise KeyboardInterrupt("killed")
        return real(task)

    with monkeypatch.context() as patch:
        patch.setattr(prepare_module, "process_chunk", dies_after_some_chunks)
        with pytest.raises(KeyboardInterrupt):
            prepare(root, store, workers=1, chunk_size=8, progress_bar=False, **kwargs)


def test_interrupted_preparation_resumes_to_an_identical_store(sample_root, sample_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    prepare_killed_after(3, monkeypatch, sample_root, store)
    assert not (store / "manifest.json").exists(), "an interrupted store never claims to be complete"
    with pytest.raises(StoreError, match="no manifest.json"):
        Store.open(store)
    progress = chunks_module.read_progress(store)
    assert sum(len(done) for done in progress["done"].values()) == 3
    assert len((store / "progress.jsonl").read_bytes().splitlines()) == 3  # a line per chunk, nothing rewritten
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert files_of(store) == files_of(sample_store)


def test_a_log_line_that_a_kill_cut_short_is_no_record_and_its_chunk_is_done_again(
    sample_root, sample_store, tmp_path, monkeypatch
):
    store = tmp_path / "store"
    prepare_killed_after(3, monkeypatch, sample_root, store)
    log = store / "progress.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][:-9])  # the third line was being written when the kill came
    assert chunks_module.read_progress(store)["done"] == {"train": [0, 1], "val": []}
    real, redone = prepare_module.process_chunk, []
    monkeypatch.setattr(
        prepare_module, "process_chunk", lambda task: redone.append((task.split, task.chunk)) or real(task)
    )
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert redone[0] == ("train", 2) and ("train", 1) not in redone
    assert files_of(store) == files_of(sample_store)


def test_a_last_log_line_whole_but_for_its_newline_is_no_record_and_repair_cuts_it_off(
    sample_root, tmp_path, monkeypatch
):
    """The kill came before the newline: the next record would run on from it, so it is no record either."""
    store = tmp_path / "store"
    prepare_killed_after(3, monkeypatch, sample_root, store, image_size=32)
    log = store / "progress.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[2])["chunk"] == 2
    log.write_bytes(b"".join(lines[:2]) + lines[2].rstrip(b"\n"))
    assert chunks_module.read_progress(store)["done"] == {"train": [0, 1], "val": []}
    assert log.read_bytes() == b"".join(lines[:2]) + lines[2].rstrip(b"\n"), "read without repair: left as it is"
    assert chunks_module.read_progress(store, repair=True)["done"] == {"train": [0, 1], "val": []}
    assert log.read_bytes() == b"".join(lines[:2])


def test_preparation_killed_before_its_first_chunk_resumes_to_an_identical_store(
    sample_root, sample_store, tmp_path, monkeypatch
):
    store = tmp_path / "store"
    prepare_killed_after(0, monkeypatch, sample_root, store)
    assert chunks_module.read_progress(store)["done"] == {"train": [], "val": []}
    images = store / "train_images.npy"  # allocated whole at the start, header and pixels
    header = np.lib.format.open_memmap(images, mode="r").offset
    assert images.stat().st_size == header + 36 * 256 * 256 * 3
    if fallocate_reserves(tmp_path):  # and its blocks reserved, so that a full disk fails now rather than later
        assert images.stat().st_blocks * 512 >= images.stat().st_size
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert files_of(store) == files_of(sample_store)


def fallocate_reserves(folder) -> bool:
    """Whether the file system reserves the blocks posix_fallocate asks for (some refuse it, ZFS >= 2.0 leaves
    the file sparse): where it does not, a store is written without reserving its space up front."""
    probe = folder / "probe"
    with open(probe, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, 1 << 20)
        except OSError:
            return False
    return probe.stat().st_blocks * 512 >= 1 << 20


@pytest.mark.parametrize("store_format", ["raw", "jpeg"])
def test_a_complete_store_holds_exactly_its_files_each_in_its_format_and_checksummed(
    request, store_format, sample_store
):
    store = sample_store if store_format == "raw" else request.getfixturevalue("jpeg_store")
    files = set(all_files_of(store))
    dtypes = {"train_labels.npy": np.int16, "val_labels.npy": np.int16, "mean.npy": np.float32}
    chunks = set()
    if store_format == "raw":
        for split in ("train", "val"):
            dtypes |= {f"{split}_images.npy": np.uint8, f"{split}_image_digests.npy": np.uint64}
    else:  # 36 and 18 images in chunks of 8
        dtypes |= {"train_jpeg_index.npy": np.int64, "val_jpeg_index.npy": np.int64}
        chunks = {f"train_jpeg/{c:06d}.bin" for c in range(5)} | {f"val_jpeg/{c:06d}.bin" for c in range(3)}
    assert files == {"manifest.json", "pca.json", *dtypes, *chunks}
    assert set(json.loads((store / "manifest.json").read_text())["files"]) == files - {"manifest.json"}
    assert {name: np.load(store / name, mmap_mode="r").dtype for name in dtypes} == dtypes


def test_the_stores_bytes_do_not_depend_on_the_order_in_which_workers_finish(tmp_path, monkeypatch):
    root = shutil.copytree(tiny_sample(tmp_path / "made"), tmp_path / "root")
    for image in sorted((root / "train").glob("*/*.JPEG"))[1::3]:  # unreadable files in several chunks
        image.write_bytes(b"not a JPEG")
    in_order = prepare(root, tmp_path / "in_order", image_size=32, workers=1, chunk_size=1, progress_bar=False)
    assert len(in_order["splits"]["train"]["skipped"]) == 2

    # the chunks of one image each finish last to first (the statistics are one task here)
    def last_to_first(function, tasks, workers):
        return reversed([*map(function, tasks)])

    monkeypatch.setattr(prepare_module, "pool_map", last_to_first)
    monkeypatch.setattr(stats, "pool_map", last_to_first)
    prepare(root, tmp_path / "reversed", image_size=32, workers=2, chunk_size=1, progress_bar=False)
    assert all_files_of(tmp_path / "reversed") == all_files_of(tmp_path / "in_order")


def test_parallel_preparation_gives_the_same_store(sample_root, sample_store, tmp_path):
    prepare(sample_root, tmp_path / "store", workers=2, chunk_size=8, progress_bar=False)
    assert files_of(tmp_path / "store") == files_of(sample_store)


def _prepare_in_a_process(root, store, start):
    start.wait()
    prepare(root, store, workers=1, chunk_size=8, progress_bar=False)


def test_jobs_preparing_one_store_at_once_wait_for_each_other(sample_root, sample_store, tmp_path):
    """The jobs of a parallel sweep share data.store_dir: one prepares, the others wait and reuse it."""
    import multiprocessing

    # Forked, as prepare() forks its own workers: a spawned job spends seconds importing before it can race.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    jobs = [context.Process(target=_prepare_in_a_process, args=(sample_root, tmp_path / "store", start)) for _ in "ab"]
    for job in jobs:
        job.start()
    start.set()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert files_of(tmp_path / "store") == files_of(sample_store)


def test_full_disk_is_a_clear_error_and_no_complete_store(sample_root, sample_store, tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(28, os.strerror(28))

    with monkeypatch.context() as patch:
        patch.setattr(os, "posix_fallocate", no_space)
        with pytest.raises(StoreError, match=r"Not enough disk space for .*train_images\.npy: about [\d,]+ MB more"):
            prepare(sample_root, tmp_path / "store", workers=1, progress_bar=False)
    assert list((tmp_path / "store").iterdir()) == [], "nothing half-made is left to trip the rerun"
    prepare(sample_root, tmp_path / "store", workers=1, chunk_size=8, progress_bar=False)
    assert files_of(tmp_path / "store") == files_of(sample_store)


def test_the_space_a_store_needs_is_estimated_from_its_images(sample_root, sample_store, jpeg_store):
    layout = discover(sample_root)
    raw = sum(p.stat().st_size for p in sample_store.rglob("*") if p.is_file())
    raw_estimate = space.store_bytes(layout, StoreSettings.from_manifest(Store.open(sample_store).manifest["settings"]))
    assert 0.99 * raw <= raw_estimate <= 1.01 * raw  # the pixels' bytes are known
    jpeg = sum(p.stat().st_size for p in jpeg_store.rglob("*") if p.is_file())
    jpeg_estimate = space.store_bytes(layout, StoreSettings.from_manifest(Store.open(jpeg_store).manifest["settings"]))
    assert jpeg <= jpeg_estimate <= raw_estimate / 3  # JPEGs' sizes vary: room to spare, still far below raw


def test_the_space_estimate_of_a_raw_store_covers_the_bytes_of_every_array_it_holds(sample_root, sample_store):
    """Pixels, digests, labels and the mean image: only the .npy headers and the JSON files are left to "about"."""
    arrays = sum(np.load(path, mmap_mode="r").nbytes for path in sample_store.glob("*.npy"))
    assert arrays <= space.store_bytes(discover(sample_root), StoreSettings(256))


def pid_of_worker(task):
    return task, os.getpid()


def test_tasks_run_on_as_many_forked_workers_as_asked_but_here_for_one_worker_or_one_task():
    import multiprocessing

    here = os.getpid()
    workers = (os.cpu_count() or 1) + 1  # other than the pool's default of one per CPU
    results = pool_map(pid_of_worker, [0, 1, 2], workers)
    done = [next(results)]
    assert len(multiprocessing.active_children()) == workers
    done.extend(results)
    assert sorted(task for task, _ in done) == [0, 1, 2] and here not in {pid for _, pid in done}
    assert here not in {pid for _, pid in pool_map(pid_of_worker, [0, 1], 2)}
    assert list(pool_map(pid_of_worker, [0, 1], 1)) == [(0, here), (1, here)]
    assert list(pool_map(pid_of_worker, [0], workers)) == [(0, here)]


def sigterm_disposition(task):
    return task, signal.getsignal(signal.SIGTERM)


def test_the_workers_stop_on_sigterm_though_the_process_that_forked_them_ignores_it():
    """The pool's exit stops its idle workers with SIGTERM: a worker that inherited a handler that does not exit (as
    Lightning's, left installed by a run that failed in its teardown) kept the pool's exit waiting for ever."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    faulthandler.dump_traceback_later(60, exit=True)  # a pool that never closes ends this process, not the suite
    try:
        done = list(pool_map(sigterm_disposition, [0, 1], 2))
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGTERM, previous)
    assert [handler for _, handler in done] == [signal.SIG_DFL, signal.SIG_DFL]


def test_a_disk_without_room_for_the_store_is_refused_before_anything_is_written(sample_root, tmp_path, monkeypatch):
    settings = StoreSettings(256, "raw", 256)
    needed = space.store_bytes(discover(sample_root), settings)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=needed - 1))
    store = tmp_path / "short"
    with pytest.raises(StoreError, match=re.escape(f"={store} has 0.0 GB free; the store needs 0.0 GB")):
        prepare(sample_root, store, workers=1, progress_bar=False)
    assert list(store.iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=needed))  # just enough
    assert prepare(sample_root, tmp_path / "enough", workers=1, progress_bar=False)["splits"]["train"]["images"] == 35


def test_an_interrupt_while_the_store_is_set_up_leaves_its_folder_empty(sample_root, jpeg_store, tmp_path, monkeypatch):
    store = tmp_path / "store"

    def interrupted(path, data):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(chunks_module, "atomic_write_json", interrupted)
        with pytest.raises(KeyboardInterrupt):
            prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert list(store.iterdir()) == [], "the chunk folders made so far are removed too"
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert all_files_of(store) == all_files_of(jpeg_store)


def disk_full_at(monkeypatch, name: str, after: int = 0) -> None:
    """fsync fails with ENOSPC (as on a disk that filled while the data sat in the page cache) for the
    (after+1)-th file whose name contains `name`."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_disk_that_fills_mid_preparation_names_the_file_and_the_space_then_resumes_identically(
    sample_root, sample_store, tmp_path, monkeypatch
):
    store = tmp_path / "store"
    with monkeypatch.context() as patch:
        # the raw images are reserved up front: the small files fill it (progress.json, then the third chunk's line)
        disk_full_at(patch, "progress.json", after=3)
        # so, where the file system reserves them, only the mean image and the small files are left to write
        left = "[01]" if fallocate_reserves(tmp_path) else r"[\d,]+"
        with pytest.raises(StoreError, match=rf"Not enough disk space for .*progress\.jsonl: about {left} MB more"):
            prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert not (store / "manifest.json").exists()
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False)
    assert files_of(store) == files_of(sample_store)


def test_store_images_are_rgb_uint8_of_the_right_class(sample_store):
    """The sample classes have distinct hues: class 0 is red, so its images are red on average."""
    store = Store.open(sample_store)
    labels = store.labels("train")
    red = np.asarray(store.images("train"))[labels == 0].reshape(-1, 3).mean(0)
    assert red[0] > red[1] + 40 and red[0] > red[2] + 40


def test_store_dir_that_cannot_be_written_says_where_to_put_it(sample_root, tmp_path, monkeypatch):
    """A read-only dataset folder is never written into: the store goes to data.store_dir, and an unwritable
    one is refused before anything is written (the tests run as root, so write access is simulated)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    with pytest.raises(StoreError, match=r"data\.store_dir=.*not writable: point it at a writable folder"):
        prepare(sample_root, tmp_path / "store", workers=1, progress_bar=False)
    assert list((tmp_path / "store").iterdir()) == []


def test_store_dir_that_cannot_be_created_says_so(sample_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"Cannot create data\.store_dir=.*writable folder"):
        prepare(sample_root, blocker / "store", workers=1, progress_bar=False)


def test_preparing_from_the_official_archives_gives_the_store_of_the_extracted_folders(
    sample_root, sample_store, tmp_path
):
    from test_layout import official_archives

    root = official_archives(sample_root, tmp_path / "archives")
    manifest = prepare(root, tmp_path / "store", workers=2, chunk_size=8, progress_bar=False)
    ours, theirs = Store.open(tmp_path / "store"), Store.open(sample_store)
    for split in ("train", "val"):
        assert np.array_equal(ours.images(split), theirs.images(split))
        assert np.array_equal(ours.labels(split), theirs.labels(split))
    assert np.array_equal(ours.mean, theirs.mean)
    (skipped,) = manifest["splits"]["train"]["skipped"]
    assert skipped["path"] == "ILSVRC2012_img_train.tar/n09000035.tar/n09000035_1.JPEG"
    assert manifest["source"]["form"] == "train archive, val archive with devkit"


def all_files_of(store):
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_jpeg_store_holds_the_raw_stores_images_as_quality_90_jpegs(jpeg_store, sample_store):
    ours, raw = Store.open(jpeg_store), Store.open(sample_store)
    assert ours.format == "jpeg" and ours.manifest["settings"] == {
        "image_size": 256,
        "resize": RESIZE,
        "format": "jpeg",
        "quality": 90,
        "chunk_size": 8,  # a resumed run must keep it: it places the images in the chunk files
    }
    assert ours.manifest["splits"] == raw.manifest["splits"]  # the same images and the same skipped file
    for split in ("train", "val"):
        assert np.array_equal(ours.labels(split), raw.labels(split))
        keep = np.flatnonzero(raw.labels(split) >= 0)
        decoded, original = ours.read(split, keep), raw.read(split, keep)
        assert decoded.shape == original.shape and decoded.dtype == np.uint8
        # JPEG at quality 90 on the sample's noisy stripes: a few levels per pixel on average
        assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 4
        assert ours.jpeg_reader(split).encoded(keep[0])[:2] == b"\xff\xd8"  # a JPEG, as stored
    size = sum(p.stat().st_size for p in jpeg_store.rglob("*.bin"))
    assert size < 0.25 * sum(p.stat().st_size for p in sample_store.glob("*_images.npy"))
    # mean and PCA are of the decoded pixels, which differ from the raw ones by JPEG noise only
    assert np.abs(ours.mean - raw.mean).mean() < 2 and np.allclose(ours.eigval, raw.eigval, rtol=0.1)
    with pytest.raises(StoreError, match="holds JPEGs"):
        ours.images("train")


def test_interrupted_jpeg_preparation_resumes_to_an_identical_store(sample_root, jpeg_store, tmp_path, monkeypatch):
    store = tmp_path / "store"
    prepare_killed_after(2, monkeypatch, sample_root, store, store_format="jpeg")
    assert not (store / "manifest.json").exists()
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert all_files_of(store) == all_files_of(jpeg_store)


def test_a_disk_that_fills_while_writing_jpeg_chunks_names_the_chunk_then_resumes_identically(
    sample_root, jpeg_store, tmp_path, monkeypatch
):
    store = tmp_path / "store"
    with monkeypatch.context() as patch:
        disk_full_at(patch, ".000002.bin.")  # the third chunk file of train
        with pytest.raises(StoreError, match=r"Not enough disk space for .*train_jpeg/000002\.bin: about [\d,]+ MB"):
            prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert chunks_module.read_progress(store)["done"]["train"] == [0, 1]
    assert not list(store.rglob(".*.tmp")), "no temporary is left behind"
    prepare(sample_root, store, workers=1, chunk_size=8, progress_bar=False, store_format="jpeg")
    assert all_files_of(store) == all_files_of(jpeg_store)


def test_a_store_of_the_other_format_is_refused(sample_root, sample_store, jpeg_store):
    with pytest.raises(StoreError, match="other settings"):
        prepare(sample_root, sample_store, progress_bar=False, store_format="jpeg")
    with pytest.raises(StoreError, match="other settings"):
        prepare(sample_root, jpeg_store, progress_bar=False, store_format="raw")
    assert prepare(sample_root, jpeg_store, chunk_size=64, store_format="jpeg")["settings"]["format"] == "jpeg"


def flip_bit(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def copy_of(tmp_path):
    def copy(store):
        shutil.copytree(store, tmp_path / "copy")
        return tmp_path / "copy"

    return copy


def test_verify_names_the_image_and_the_labels_file_whose_bytes_changed(sample_store, copy_of):
    store = copy_of(sample_store)
    assert verify(store, progress_bar=False) == []
    header = np.load(store / "train_images.npy", mmap_mode="r").offset
    flip_bit(store / "train_images.npy", header + 17 * 256 * 256 * 3 + 1000)  # a pixel of slot 17
    flip_bit(store / "val_labels.npy", len((store / "val_labels.npy").read_bytes()) - 2)  # the last label
    problems = verify(store, progress_bar=False)
    assert len(problems) == 2, problems  # the small files first (opening checks them too), then the images
    assert problems[0].startswith("val_labels.npy: the bytes differ")
    assert problems[1].startswith("train_images.npy (slots 17-17, bytes ")


@pytest.mark.parametrize("block", [64, 4])
def test_verify_merges_adjacent_damaged_slots_into_ranges_whose_bytes_hold_the_flipped_ones(
    sample_store, copy_of, block
):
    """Slots 0, 5, 17-18 and 20 damaged: four ranges, each naming the bytes the flipped ones lie in (17-18 is
    merged with two ranges before it). Blocks of 4 put the slots in several blocks, each counted from its own
    start."""
    store = copy_of(sample_store)
    images = np.load(store / "train_images.npy", mmap_mode="r")
    header, per_slot = images.offset, images[0].nbytes
    del images
    flipped = {slot: header + slot * per_slot + 5 for slot in (0, 5, 17, 18, 20)}
    for offset in flipped.values():
        flip_bit(store / "train_images.npy", offset)
    problems = _verify_images(store, "train_images.npy", store / "train_image_digests.npy", block)
    expected = []
    for first, last in [(0, 0), (5, 5), (17, 18), (20, 20)]:
        low, high = header + first * per_slot, header + (last + 1) * per_slot - 1
        assert all(low <= flipped[slot] <= high for slot in range(first, last + 1))
        expected.append(
            f"train_images.npy (slots {first}-{last}, bytes {low:,}-{high:,}): "
            "the images differ from those prepared (checksum mismatch)"
        )
    assert problems == expected


def test_verify_names_the_jpeg_chunk_that_changed(jpeg_store, copy_of):
    store = copy_of(jpeg_store)
    chunk = store / "train_jpeg" / "000001.bin"
    flip_bit(chunk, len(chunk.read_bytes()) // 2)
    assert verify(store, progress_bar=False) == [
        "train_jpeg/000001.bin (slots 8-15): the bytes differ from those prepared (checksum mismatch)"
    ]


def test_opening_a_store_with_a_file_of_the_wrong_size_or_missing_is_refused(jpeg_store, copy_of):
    store = copy_of(jpeg_store)
    Store.open(store)
    labels = store / "val_labels.npy"
    labels.write_bytes(labels.read_bytes()[:-2])
    (store / "train_jpeg" / "000003.bin").unlink()
    with pytest.raises(
        StoreError, match=r"damaged: train_jpeg/000003\.bin: missing.*val_labels\.npy: \d+ bytes.*verify=true"
    ):
        Store.open(store)


@pytest.mark.slow
def test_the_verify_command_exits_non_zero_naming_what_changed(sample_store, copy_of, tmp_path):
    """src/prepare.py verify=true, as a user runs it (a process of its own: seconds to start)."""
    store = copy_of(sample_store)
    header = np.load(store / "val_images.npy", mmap_mode="r").offset
    flip_bit(store / "val_images.npy", header + 3 * 256 * 256 * 3)  # the first byte of slot 3
    command = [sys.executable, str(ROOT / "src" / "prepare.py"), f"data.store_dir={store}", "verify=true"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "DAMAGED val_images.npy (slots 3-3, bytes " in done.stdout


def tiny_sample(root, seed=1, classes=3):
    """A small sample dataset of small images, quick to prepare at image_size=32."""
    return make_sample(root, SampleSpec(classes=classes, train_per_class=2, val_per_class=1, seed=seed, scale=0.3))


@pytest.mark.parametrize("form", ["folders", "archives"])
def test_a_store_is_never_reused_for_another_source(tmp_path, form):
    from test_layout import official_archives

    a, b = tiny_sample(tmp_path / "a", seed=1), tiny_sample(tmp_path / "b", seed=2)
    if form == "archives":
        a, b = official_archives(a, tmp_path / "a_tars"), official_archives(b, tmp_path / "b_tars")
    store = tmp_path / "store"
    prepare(a, store, image_size=32, workers=1, progress_bar=False)
    before = all_files_of(store)
    with pytest.raises(StoreError, match=rf"made from {a} \(fingerprint \w+\), not from data\.root={b} \(finger"):
        prepare(b, store, image_size=32, workers=1, progress_bar=False)
    assert all_files_of(store) == before
    assert prepare(a, store, image_size=32, workers=1, progress_bar=False)["source"]["root"] == str(a)


def test_an_unfinished_store_is_never_finished_from_another_source_or_with_other_settings(tmp_path, monkeypatch):
    a = tiny_sample(tmp_path / "a", seed=1)
    b = shutil.copytree(a, tmp_path / "b")  # a copy, keeping every time...
    image = next((b / "train").glob("*/*.JPEG"))
    noise_image((40, 30)).save(image.with_suffix(".new"), "JPEG")
    os.replace(image.with_suffix(".new"), image)  # ...then one image replaced: the same names and labels
    os.utime(image.parent, ns=(0, 1))  # its folder's time moves on (set: the clock may not have ticked since)
    store = tmp_path / "store"
    prepare_killed_after(1, monkeypatch, a, store, image_size=32)
    before = all_files_of(store)
    with pytest.raises(
        StoreError, match=rf"unfinished store of other images .*{re.escape(str(a))}.*root={re.escape(str(b))}"
    ):
        prepare(b, store, image_size=32, workers=1, chunk_size=8, progress_bar=False)
    with pytest.raises(StoreError, match=r"unfinished store of other images or settings .*'image_size': 32"):
        prepare(a, store, image_size=48, workers=1, chunk_size=8, progress_bar=False)
    assert all_files_of(store) == before


def test_an_unfinished_raw_store_is_not_resumed_with_another_chunk_size(tmp_path, monkeypatch):
    # A raw store's manifest does not record its chunk size, but the chunks recorded done are counted in it:
    # resumed with chunks of 4, the 8-image chunks done would be read as other slots, leaving images unwritten.
    root, store = tiny_sample(tmp_path / "root", seed=1), tmp_path / "store"
    prepare_killed_after(1, monkeypatch, root, store, image_size=32)
    before = all_files_of(store)
    with pytest.raises(StoreError, match=r"cut into chunks of 8 images, not 4: resume it with the chunk size"):
        prepare(root, store, image_size=32, workers=1, chunk_size=4, progress_bar=False)
    assert all_files_of(store) == before
    prepare(root, store, image_size=32, workers=1, chunk_size=8, progress_bar=False)
    assert verify(store) == []


def test_a_store_is_never_reused_for_another_sample_spec(tmp_path):
    from alexnet.data.datamodule import ImageNetDataModule

    spec = {"classes": 3, "train_per_class": 2, "val_per_class": 1, "seed": 0, "scale": 0.3}

    def datamodule(root, **change):
        sample = {**spec, **change}
        return ImageNetDataModule(
            str(root), str(tmp_path / "store"), image_size=32, crop_size=32, prepare_workers=1, sample=sample
        )

    datamodule(tmp_path / "a").prepare_data()
    with pytest.raises(
        StoreError, match=r"made from .*/a \(sample \{'classes': 3.*not from .*/b \(sample \{'classes': 2"
    ):
        datamodule(tmp_path / "b", classes=2).prepare_data()
    # the store is complete, so the sample is not looked at (nor made again): the store refuses the other spec
    with pytest.raises(
        StoreError, match=r"made from .*/a \(sample \{'classes': 3.*not from .*/a \(sample \{'classes': 2"
    ):
        datamodule(tmp_path / "a", classes=2).prepare_data()
    assert Store.open(tmp_path / "store").num_classes == 3


def test_the_summary_lists_every_file_not_used_with_the_reason(sample_store, tmp_path):
    summary = describe(sample_store, Store.open(sample_store).manifest)
    assert "train: 35 images, 1 skipped" in summary
    assert re.search(
        r"skipped in train \(cannot be decoded.*\n    train/n09000035/n09000035_1\.JPEG: \w*Error: \w", summary
    )
    root = tiny_sample(tmp_path / "odd")
    (root / "train" / "n09000000" / "Thumbs.db").write_bytes(b"x")
    (root / "train" / "n09000007" / "loop.JPEG").symlink_to(root / "train" / "n09000007" / "loop.JPEG")
    manifest = prepare(root, tmp_path / "store", image_size=32, workers=1, progress_bar=False)
    assert manifest["layout_oddities"] == [
        {"path": "train/n09000000/Thumbs.db", "reason": "not an image (only .jpeg/.jpg/.png files are read)"},
        {"path": "train/n09000007/loop.JPEG", "reason": "a symlink loop"},
    ]
    summary = describe(tmp_path / "store", manifest)
    assert "  not read from data.root:\n    train/n09000000/Thumbs.db: not an image" in summary
    assert "    train/n09000007/loop.JPEG: a symlink loop" in summary


def test_the_summary_names_the_stores_form_and_cuts_a_long_list_at_20_saying_where_the_rest_is(
    sample_store, jpeg_store
):
    manifest = json.loads((sample_store / "manifest.json").read_text())
    manifest["layout_oddities"] = [{"path": f"train/odd/{i}.txt", "reason": "not an image"} for i in range(23)]
    lines = describe(sample_store, manifest).splitlines()
    assert lines[0] == f"store: {sample_store} (raw, 256 px, version {manifest['store_version']})"
    assert lines[lines.index("  not read from data.root:") + 1 :] == [
        *(f"    train/odd/{i}.txt: not an image" for i in range(20)),
        f"    ... and 3 more, all in {sample_store / 'manifest.json'}",
    ]
    manifest["layout_oddities"] = manifest["layout_oddities"][:20]
    assert describe(sample_store, manifest).splitlines()[-1] == "    train/odd/19.txt: not an image"
    assert describe(jpeg_store, Store.open(jpeg_store).manifest).startswith(f"store: {jpeg_store} (jpeg, 256 px")


def test_the_space_a_store_already_takes_counts_the_blocks_its_files_hold(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "images.npy").write_bytes(data)
    (tmp_path / "sparse.npy").touch()
    os.truncate(tmp_path / "sparse.npy", 64 << 20)  # reserved by size, not by blocks: takes (almost) nothing
    assert 8 << 20 <= space._on_disk(tmp_path) <= (8 << 20) + (8 << 10)  # a block or two of metadata


def test_a_source_is_described_by_its_sample_spec_or_its_fingerprint():
    assert describe_source({"root": "/d", "sample": "S(1)"}) == "/d (sample S(1))"
    assert describe_source({"root": "/d", "fingerprint": "ab12"}) == "/d (fingerprint ab12)"


def test_store_settings_refuse_an_image_size_outside_its_rule_naming_the_key():
    with pytest.raises(ValueError, match=r"data\.image_size=0"):
        StoreSettings(0)
