"""k-NN row (image): weighted k-NN top-1 / top-5 of frozen features (DINO's protocol: cosine
similarity, k=20, temperature 0.07). Features are extracted once, in batches, on every process's
shard and gathered; works on CPU and GPU, 1 or N processes. SIGINT / SIGTERM stop it at once
(exit 130 / 143): knn.json and features.pth are written whole or not at all."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..atomic import atomic_path, remove_stale_temp_files, stale_note, write_atomic
from ..config_checks import check_values
from ..engine.distributed import DistEnv, seed_everything
from ..engine.run_folder import check_writable
from ..engine.trainer import amp_dtype
from ..errors import Interrupted, stop_on_signals
from ..eval.frozen import build_frozen_features, embed_splits, labelled_datasets
from ..eval.knn import knn_accuracy
from ..eval.unreadable import coverage
from .evaluation import EVAL_RULES


def validate(cfg: dict) -> None:
    check_values(cfg, EVAL_RULES)


def knn_metrics(cfg: dict, env: DistEnv) -> dict:
    """Extract train and val features once, classify val by k-NN; the metrics dict."""
    ev = cfg["eval"]
    seed_everything(ev["seed"])                       # same random-init weights on every rank
    features, img_size, report = build_frozen_features(cfg["model"], env)
    datasets = labelled_datasets(cfg["data"], img_size, ev["seed"])
    t0 = time.perf_counter()
    feats, num_classes = embed_splits(features, datasets, cfg["data"], ev["batch_size"], env, ev["seed"],
                                      amp_dtype(ev["amp"], env.device, "eval.amp"), ev["progress"])
    env.print_main(report)                            # once the data has passed its checks
    t_feat = time.perf_counter() - t0
    metrics = knn_accuracy(*feats["train"], *feats["val"], num_classes, cfg["knn"]["k"],
                           cfg["knn"]["temperature"])
    metrics.update(feature_dim=int(feats["train"][0].shape[1]), feature_seconds=round(t_feat, 2),
                   world=env.world, pretrained=cfg["model"]["pretrained"], pool=cfg["model"]["pool"],
                   train_total=feats["train"].total, test_total=feats["val"].total,
                   unreadable={split: sorted(f.unreadable.values()) for split, f in feats.items()
                               if f.unreadable})
    if ev["save_features"] and env.is_main:
        with atomic_path(Path(ev["output_dir"]) / "features.pth") as tmp:
            torch.save({f"{split}_{kind}": t.cpu() for split, pair in feats.items()
                        for kind, t in zip(("features", "labels"), pair)}, tmp)
    return metrics


def run(cfg: dict, env: DistEnv) -> dict:
    out = Path(cfg["eval"]["output_dir"])
    if env.is_main:
        check_writable(out)
    try:
        with stop_on_signals():
            metrics = knn_metrics(cfg, env)
    except Interrupted as e:
        raise Interrupted(e.signum, f"{e}: no {out / 'knn.json'} written", say=env.is_main) from None
    if "note" in metrics:
        env.print_main(f"note: {metrics['note']}")
    top5 = "n/a (5 classes or fewer)" if metrics["top5"] is None else f"{metrics['top5']:.2f}"
    env.print_main(f"k-NN (k={metrics['k']}, T={metrics['temperature']}): top-1 {metrics['top1']:.2f}  "
                   f"top-5 {top5}  "
                   f"{coverage(metrics['test_samples'], metrics['test_total'], 'val')}; "
                   f"neighbours {coverage(metrics['train_samples'], metrics['train_total'], 'train')} "
                   f"({env.world} process(es)) -> {out / 'knn.json'}")
    if env.is_main:
        if stale := remove_stale_temp_files(out):
            env.print_main(stale_note(out, stale))
        write_atomic(out / "knn.json", (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics
