"""Print the network layer by layer: output shape, parameters, forward FLOPs per image, device.

python src/summary.py                          # the paper's net (1000 classes)
python src/summary.py experiment=smoke         # the smoke run's net
python src/summary.py model.columns=1 model.lrn=false
python src/summary.py model.placement=split model.devices=[cpu,cpu]
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

import alexnet.base.config  # noqa: F401  (registers the schema)
from alexnet.base.config import plain
from alexnet.training.checks import refuse_unknown_keys
from alexnet.training.rundir import user_errors_reported

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="summary")
@user_errors_reported
def main(cfg: DictConfig) -> None:
    from alexnet.network.model import AlexNet  # torch loads once the config has passed its checks
    from alexnet.network.summary import format_table, layer_rows

    model_cfg = plain(cfg.model)
    model_cfg["num_classes"] = model_cfg["num_classes"] or 1000  # null, the store's count: ILSVRC-2012's here
    model = AlexNet(**model_cfg)
    print(format_table(layer_rows(model, model_cfg["input_size"])))


if __name__ == "__main__":
    refuse_unknown_keys(CONF)
    main()
