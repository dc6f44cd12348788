"""Overrides for a small, fast run of the real config: 6 classes, 163-pixel crops (pool5 is 4x4), CSV logs."""

FAST = [
    "logger=csv",
    "callbacks.progress=null",
    "data.sample.classes=6",
    "data.sample.train_per_class=6",
    "data.sample.val_per_class=3",
    "model.num_classes=6",
    "data.crop_size=163",
    "data.batch_size=8",
    "data.eval_batch_size=9",
    "data.num_workers=0",
    "data.prepare_workers=1",
    "+trainer.enable_model_summary=false",
]
