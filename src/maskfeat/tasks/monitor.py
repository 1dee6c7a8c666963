"""The k-NN monitor of pre-training (image): every ``monitor.every`` epochs, ``maskfeat knn``'s weighted
k-NN top-1 / top-5 of the encoder being trained, on ``monitor.data`` (the knn job's data keys, the same
datasets, feature extraction and classifier), each rank embedding its share, merged.

Built by the task before the run folder is taken (a bad monitor set stops the run before anything is
written); called through the Trainer's ``on_epoch_end``, so the engine knows nothing of it; its history is
checkpointed (``extra['knn_monitor']``). It leaves the training untouched: the random generators are
restored after it, and the model is put back in the mode it was in."""
from __future__ import annotations

import re
import time

from ..engine.checkpoint import rng_state, set_rng_state
from ..engine.distributed import DistEnv
from ..errors import ConfigError, UserError
from ..eval.classifier import Pooled
from ..eval.frozen import embed_splits, labelled_datasets
from ..eval.knn import knn_accuracy

ROOTED_SOURCES = ("folder", "list", "shards")   # read under a root (idx, fashion-mnist need none)


def monitor_data(mon: dict, data_root: str = "") -> dict:
    """The knn job's ``data`` section of the monitor: its subsets from monitor.train/val_samples; a blank
    ``monitor.data.root`` of a source that reads under a root is the pre-training's ``data.root``."""
    data = {**mon["data"], "train_subset": mon["train_samples"], "val_subset": mon["val_samples"],
            "shuffle": False}
    if not data["root"] and data["source"] in ROOTED_SOURCES:
        data["root"] = data_root
    return data


class KnnMonitor:
    """``monitor(trainer, epoch)`` -> {'knn_top1', 'knn_top5', 'knn_seconds'} every ``monitor.every``
    epochs, else None; ``history``: every result so far with its epoch and step."""

    def __init__(self, cfg: dict, env: DistEnv):
        mon = cfg["monitor"]
        if mon["every"] > cfg["train"]["epochs"]:
            raise ConfigError(f"monitor.every: {mon['every']} is more than train.epochs "
                              f"{cfg['train']['epochs']}; the monitor would never run")
        self.mon, self.env, self.seed = mon, env, cfg["train"]["seed"]
        self.data = monitor_data(mon, cfg["data"]["root"])
        try:
            self.datasets = labelled_datasets(self.data, cfg["model"]["img_size"], self.seed)
        except UserError as e:          # the knn job names data.*: here it is monitor.data.*
            raise UserError(re.sub(r"\bdata\.", "monitor.data.", str(e), count=1)) from None
        self.history: list[dict] = []

    def __call__(self, trainer, epoch: int) -> dict | None:
        if epoch % self.mon["every"]:
            return None
        t0, rng = time.perf_counter(), rng_state(self.env.device)
        model, was_training = trainer.model, trainer.model.training
        try:
            features = Pooled(model.encoder, self.mon["pool"])
            feats, num_classes = embed_splits(features, self.datasets, self.data, self.mon["batch_size"],
                                              self.env, self.seed, trainer.dtype)
        finally:
            model.train(was_training)
            set_rng_state(rng, self.env.device)
        m = knn_accuracy(*feats["train"], *feats["val"], num_classes, self.mon["k"], self.mon["temperature"])
        seconds = round(time.perf_counter() - t0, 3)
        rec = {"knn_top1": m["top1"], "knn_top5": m["top5"], "knn_seconds": seconds}
        self.history.append({"epoch": epoch, "step": trainer.state.step, **rec})
        return rec

    def state_dict(self) -> dict:
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [dict(h) for h in state.get("history", [])]


def build_monitor(cfg: dict, env: DistEnv) -> dict:
    """The Trainer's keyword options for the monitor (none when ``monitor.every`` is 0 or absent)."""
    if not cfg.get("monitor", {}).get("every"):
        return {}
    monitor = KnnMonitor(cfg, env)
    return {"on_epoch_end": monitor, "extra_state": {"knn_monitor": monitor}}
