"""Figure 1 (Section 3.1): the four-layer net on CIFAR-10, ReLU against tanh, each until its training error first
falls below 25%.

python src/figure1.py data.root=DIR                                # one run: ReLU at optim.lr (conf/figure1.yaml)
python src/figure1.py -m stage=screen data.root=DIR                # every learning rate of both, first epochs
python src/figure1.py -m stage=seeds model.activation=tanh optim.lr=0.01 data.root=DIR   # one rate, 3 seeds
bash tools/figure1.sh DIR                                          # the whole experiment, then the report
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from alexnet.base.config import Figure1Config
from alexnet.base.runtime import keep_freed_memory
from alexnet.training.checks import refuse_unknown_keys
from alexnet.training.rundir import user_errors_reported

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="figure1")
@user_errors_reported
def main(cfg: DictConfig) -> float:
    from alexnet.training.classify import train_classifier  # torch and Lightning load once the config has passed

    if cfg.trainer.get("accelerator") == "cpu":
        keep_freed_memory()
    results = train_classifier(cfg)
    return float(results["epochs_to_level"] or "nan")  # for sweepers that minimise


if __name__ == "__main__":
    refuse_unknown_keys(CONF, schema=Figure1Config)
    main()
