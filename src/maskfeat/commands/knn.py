"""``maskfeat knn``: weighted k-NN top-1 / top-5 of frozen features (DINO's protocol:
cosine similarity, k=20, temperature 0.07). Features are extracted once, in batches, on
every process's shard and gathered; works on CPU and GPU, 1 or N processes."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..config import resolve_config
from ..defaults import KNN
from ..engine.distributed import cleanup, init_distributed, seed_everything
from ..engine.trainer import amp_dtype, check_writable
from ..errors import UserError
from ..eval.frozen import build_frozen_features, embed_splits, say
from ..eval.knn import knn_accuracy
from .common import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "Fashion-MNIST; give model.pretrained=<checkpoint>")


def build_config(config_path: str | None, overrides) -> dict:
    cfg = resolve_config(KNN, config_path, overrides)
    if cfg["knn"]["k"] < 1 or cfg["knn"]["temperature"] <= 0:
        raise UserError("knn.k must be >= 1 and knn.temperature > 0")
    return cfg


def run_knn(cfg: dict, env) -> dict:
    """Extract train and val features once, classify val by k-NN; the metrics dict."""
    ev = cfg["eval"]
    seed_everything(ev["seed"])                       # same random-init weights on every rank
    features, img_size = build_frozen_features(cfg["model"], env)
    t0 = time.perf_counter()
    feats, num_classes = embed_splits(features, img_size, cfg["data"], ev["batch_size"], env, ev["seed"],
                                      amp_dtype(ev["amp"], env.device), ev["progress"])
    t_feat = time.perf_counter() - t0
    metrics = knn_accuracy(*feats["train"], *feats["val"], num_classes, cfg["knn"]["k"], cfg["knn"]["temperature"])
    metrics.update(feature_dim=int(feats["train"][0].shape[1]), feature_seconds=round(t_feat, 2),
                   world=env.world, pretrained=cfg["model"]["pretrained"], pool=cfg["model"]["pool"])
    if ev["save_features"] and env.is_main:
        torch.save({f"{split}_{kind}": t.cpu() for split, pair in feats.items() for kind, t in zip(("features", "labels"), pair)},
                   Path(ev["output_dir"]) / "features.pth")
    return metrics


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.config, args.overrides)
    env = init_distributed(cfg["eval"]["device"])
    try:
        out = Path(cfg["eval"]["output_dir"])
        if env.is_main:
            check_writable(out)
        metrics = run_knn(cfg, env)
        say(env, f"k-NN (k={metrics['k']}, T={metrics['temperature']}): top-1 {metrics['top1']:.2f}  "
                 f"top-5 {metrics['top5']:.2f}  ({metrics['train_samples']} train / "
                 f"{metrics['test_samples']} val, {env.world} process(es)) -> {out / 'knn.json'}")
        if env.is_main:
            (out / "knn.json").write_text(json.dumps(metrics, indent=2) + "\n")
    finally:
        cleanup(env)
    return 0
