"""Prepare the store once, on a CPU node, before training (the datamodule does the same on first use).

    python src/prepare.py experiment=full data.root=/datasets/ilsvrc2012 data.store_dir=/fast/imagenet_store
    python src/prepare.py                      # the sample dataset
    python src/prepare.py data.store_dir=/fast/imagenet_store verify=true     # check every byte; exit 1 if any differ
    python src/prepare.py data.store_dir=/fast/imagenet_store data.root=/datasets/ilsvrc2012 upgrade=true
                                               # a store of an earlier version, brought to this one in place

Safe to rerun: a complete store is left alone, an interrupted one is finished.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import alexnet.base.config  # noqa: F401  (registers the schema)
from alexnet.base.config import plain
from alexnet.training.checks import refuse_unknown_keys
from alexnet.training.rundir import user_errors_reported

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="tool")
@user_errors_reported
def main(cfg: DictConfig) -> None:
    from alexnet.data.datamodule import ImageNetDataModule  # torch loads once the config has passed its checks
    from alexnet.data.upgrade import upgrade
    from alexnet.data.verify import describe, verify

    datamodule = ImageNetDataModule(**plain(cfg.data))
    if cfg.upgrade:
        print(upgrade(datamodule.store_dir, datamodule.root))
        return
    if cfg.verify:
        problems = verify(datamodule.store_dir)
        for problem in problems:
            print(f"DAMAGED {problem}")
        print(f"{datamodule.store_dir}: {len(problems) or 'nothing'} differing from the checksums taken when prepared")
        if problems:
            print("Delete the store and prepare it again (or restore it from a copy).")
            sys.exit(1)
        return
    datamodule.prepare_data()
    datamodule.setup()
    print(describe(datamodule.store_dir, datamodule.opened.manifest))


if __name__ == "__main__":
    refuse_unknown_keys(CONF)
    main()
