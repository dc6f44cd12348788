"""Prepare the store once, on a CPU node, before training (the datamodule does the same on first use).

    python src/prepare.py experiment=full data.root=/datasets/ilsvrc2012 data.store_dir=/fast/imagenet_store
    python src/prepare.py                      # the sample dataset

Safe to rerun: a complete store is left alone, an interrupted one is finished.
"""

import hydra
from omegaconf import DictConfig

import alexnet.config  # noqa: F401  (registers the schema)
from alexnet.config import plain
from alexnet.data.datamodule import ImageNetDataModule


@hydra.main(version_base="1.3", config_path="../conf", config_name="tool")
def main(cfg: DictConfig) -> None:
    datamodule = ImageNetDataModule(**plain(cfg.data))
    datamodule.prepare_data()
    datamodule.setup()
    splits = datamodule.store.manifest["splits"]
    print(f"store: {datamodule.store_dir}")
    for split, info in splits.items():
        print(f"  {split}: {info['images']} images, {len(info['skipped'])} skipped")


if __name__ == "__main__":
    main()
