"""Evaluate checkpoints on val: top-1 and top-5 error with 1 and 10 crops.

python src/eval.py ckpt_path=logs/smoke/baseline/checkpoints/last.ckpt
python src/eval.py experiment=full ckpt_paths=[a.ckpt,b.ckpt,c.ckpt,d.ckpt,e.ckpt]   # averaged, Table 2
"""

import hydra
from omegaconf import DictConfig

import alexnet.config  # noqa: F401  (registers the schema)
from alexnet.errors import user_errors_reported
from alexnet.evaluation import evaluate_checkpoints


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@user_errors_reported
def main(cfg: DictConfig) -> None:
    evaluate_checkpoints(cfg)


if __name__ == "__main__":
    main()
