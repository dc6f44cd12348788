"""Evaluate checkpoints on val: top-1 and top-5 error with 1 and 10 crops.

python src/eval.py ckpt_path=logs/smoke/baseline/checkpoints/last.ckpt
python src/eval.py experiment=full ckpt_paths=[a.ckpt,b.ckpt,c.ckpt,d.ckpt,e.ckpt]   # averaged, Table 2
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

import alexnet.base.config  # noqa: F401  (registers the schema)
from alexnet.training.checks import refuse_unknown_keys
from alexnet.training.rundir import user_errors_reported

CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="eval")
@user_errors_reported
def main(cfg: DictConfig) -> None:
    from alexnet.training.evaluation import evaluate_checkpoints  # torch loads once the config has passed its checks

    evaluate_checkpoints(cfg)


if __name__ == "__main__":
    refuse_unknown_keys(CONF)
    main()
