"""The datamodule's batches from either store format: what reaches the augmentation is the same."""

import numpy as np
import pytest
import torch

from alexnet.data.datamodule import ImageNetDataModule, ShardedBatchSampler
from alexnet.data.store import Store


@pytest.fixture(scope="module")
def stores(sample_store, jpeg_store):
    return {"raw": sample_store, "jpeg": jpeg_store}


def first_batch(root, store_dir, store_format, split):
    datamodule = ImageNetDataModule(str(root), str(store_dir), store_format, batch_size=8, num_workers=0)
    datamodule.setup()
    loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
    images, labels = datamodule.on_before_batch_transfer(next(iter(loader)), 0)
    return datamodule, images, labels


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_jpeg_store_batch_is_decoded_to_what_a_raw_batch_holds(sample_root, stores, split):
    _, raw_images, raw_labels = first_batch(sample_root, stores["raw"], "raw", split)
    datamodule, jpeg_images, jpeg_labels = first_batch(sample_root, stores["jpeg"], "jpeg", split)
    assert torch.equal(raw_labels, jpeg_labels)  # the same sampler, the same images in the same order
    assert jpeg_images.shape == raw_images.shape and jpeg_images.dtype == torch.uint8
    assert (jpeg_images.int() - raw_images.int()).abs().float().mean() < 4  # JPEG quality 90
    store = Store.open(stores["jpeg"])
    slots = np.flatnonzero(store.labels(split) >= 0)
    batch_size = 8 if split == "train" else datamodule.eval_batch_size
    if split == "val":  # evaluation reads in order: the decoded images are exactly the stored JPEGs
        np.testing.assert_array_equal(jpeg_images.numpy(), store.read(split, slots[:batch_size]))
    augmented = datamodule.augment(jpeg_images, training=split == "train")
    assert augmented.shape[-3:] == (3, 227, 227)


def test_a_raw_batch_passes_through_untouched(sample_root, stores):
    datamodule = ImageNetDataModule(str(sample_root), str(stores["raw"]), batch_size=8, num_workers=0)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert datamodule.on_before_batch_transfer(batch, 0) is batch


def test_each_process_evaluates_every_worldth_image_so_the_processes_share_the_split_once():
    shards = [ShardedBatchSampler(10, batch_size=2, shuffle=False, rank=r, world=3) for r in range(3)]
    assert [[i for batch in shard for i in batch] for shard in shards] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
