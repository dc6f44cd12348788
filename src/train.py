"""Train the 2012 network.

python src/train.py                         # experiment=smoke: the sample dataset, CPU, minutes
python src/train.py experiment=full         # the paper's run on ILSVRC-2012 (data.root=...)
python src/train.py experiment=full model.lrn=false trainer=gpu
python src/train.py experiment=full ckpt_path=last     # resume this run
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

import alexnet.base.config  # noqa: F401  (registers the schema)
from alexnet.base.runtime import keep_freed_memory
from alexnet.training.checks import refuse_unknown_keys
from alexnet.training.rundir import user_errors_reported

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
@user_errors_reported
def main(cfg: DictConfig) -> float:
    # Imported once the config has passed its checks (a Hydra callback): torch and Lightning take seconds to
    # load, and a bad value is refused without them.
    from alexnet.training.train import train

    if cfg.trainer.get("accelerator") == "cpu":
        keep_freed_memory()  # process-wide: the training step's freed activations are reused, not page-faulted
    results = train(cfg)
    return results.get("top1_err", float("nan"))  # for sweepers that optimise


if __name__ == "__main__":
    refuse_unknown_keys(CONF)
    main()
