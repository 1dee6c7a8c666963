"""Do MaskFeat's features learn anything? k-NN and linear-probe top-1 on Fashion-MNIST.

For each seed: a random-init ViT (no pre-training), MaskFeat with HOG targets, MaskFeat
with raw-pixel targets (the paper's ablation) and, on request, MaskFeat with the visible-patch
encoder (``visible`` or ``visible@RATIO``: model.encoder=visible, HOG targets, mask ratio 0.4 or
RATIO), each pre-trained on the 60k training images (28 px upsampled to 56, patch 8, HOG cell 4).
Then, on the frozen encoder: features of the 60k train / 10k test images extracted once,
weighted k-NN (cosine, k=20, T=0.07) and a linear probe (BatchNorm + Linear on the stored
features), both scored on the 10k test set. Prints a table and writes it as JSON.

Budget: pre-training time is CPU time of the bench process (all its threads; the pre-training
data loading runs in-process so that it is counted too), so other jobs on the machine do not
shift it. ``--schedule steps`` (default): every run has the same ``--steps`` lr schedule and
stops early if it reaches its share of ``--budget-min``. ``--schedule minutes``: equal
pre-training minutes: each run first times a few steps (``--calibrate-steps``, on a throwaway
copy) and sizes its lr schedule to end at its share of the budget, so a cheaper variant takes
more steps.

It reuses the machinery of the commands: PRETRAIN config + build_pretrain_model +
build_pretrain_dataset (data.source=fashion-mnist) + Trainer for pre-training; the
frozen-encoder set-up, feature extraction and k-NN of `maskfeat knn`; the cached-feature
probe of `maskfeat linprobe`.

    python bench/quality.py                        # the full bench (~25 min on 2 CPU cores)
    python bench/quality.py --steps 50 --seeds 0 --train-subset 5000   # a smoke run
    python bench/quality.py --variants random hog visible visible@0.75 --schedule minutes --budget-min 24
Needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from maskfeat.config import resolve_config
from maskfeat.data import build_loader, build_pretrain_dataset
from maskfeat.defaults import KNN, LINPROBE, PRETRAIN
from maskfeat.engine.distributed import DistEnv, seed_everything
from maskfeat.engine.trainer import Trainer
from maskfeat.errors import UserError
from maskfeat.eval.frozen import build_frozen_features, embed_splits, labelled_datasets
from maskfeat.eval.knn import knn_accuracy
from maskfeat.logs import read_log
from maskfeat.models import build_pretrain_model
from maskfeat.tasks.linprobe import probe_on_features
from maskfeat.tasks.steps import PretrainStep
from maskfeat.tasks.training import start_trainer

FMNIST_MEAN, FMNIST_STD = [0.2860] * 3, [0.3530] * 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", default=["random", "hog", "pixel"], type=variant_name,
                   help="random, hog, pixel, visible (mask 0.4) or visible@RATIO")
    p.add_argument("--steps", type=int, default=600,
                   help="pre-training steps per run (the lr schedule's length)")
    p.add_argument("--budget-min", type=float, default=15.0,
                   help="CPU-minute budget of all pre-training runs together; a run that reaches its share "
                        "(budget / runs) stops early at a step boundary (its steps are reported)")
    p.add_argument("--schedule", default="steps", choices=["steps", "minutes"],
                   help="steps: every run --steps long; "
                        "minutes: each run's schedule sized to its budget share")
    p.add_argument("--calibrate-steps", type=int, default=30,
                   help="--schedule minutes: steps timed per run (the first 5 are warm-up)")
    p.add_argument("--decoder-dim", type=int, default=0,
                   help="visible: model.decoder_dim (0 = half the encoder's)")
    p.add_argument("--decoder-depth", type=int, default=2, help="visible: model.decoder_depth")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=4e-3, help="pre-training lr per 256 images")
    p.add_argument("--arch", default="vit-pico")
    p.add_argument("--img-size", type=int, default=56)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--cell", type=int, default=4)
    p.add_argument("--window", type=int, default=8, help="HOG gaussian_window (patch size or 0)")
    p.add_argument("--pool", default="avg", choices=["cls", "avg"])
    p.add_argument("--train-subset", type=int, default=0, help="train images for k-NN / probe (0 = all 60k)")
    p.add_argument("--test-subset", type=int, default=0,
                   help="test images scored (0 = all 10k; smoke runs only)")
    p.add_argument("--probe-epochs", type=int, default=10)
    p.add_argument("--probe-lr", type=float, default=1.0,
                   help="linear probe SGD lr per 256 (BatchNorm'd features)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="work_dirs/bench_quality")
    return p.parse_args(argv)


def variant_name(name: str) -> str:
    """argparse type: random, hog, pixel, visible or visible@RATIO with 0 < RATIO < 1."""
    base, _, ratio = name.partition("@")
    try:
        ok = base in ("random", "hog", "pixel", "visible") and \
            (not ratio or (base == "visible" and 0 < float(ratio) < 1))
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{name!r}: choose random, hog, pixel, visible or "
                                         "visible@RATIO (0 < RATIO < 1)")
    return name


def variant_overrides(args, variant: str) -> dict:
    """Config overrides of a pre-training variant (all but 'random')."""
    base, _, ratio = variant.partition("@")
    if base != "visible":
        return {"model.target": base}
    return {"model.target": "hog", "model.encoder": "visible", "mask.ratio": float(ratio or 0.4),
            "model.decoder_dim": args.decoder_dim, "model.decoder_depth": args.decoder_depth}


def cpu_seconds() -> float:
    """CPU time of this process, all threads (the pre-training loads its data in-process)."""
    return time.process_time()


def pretrain(args, variant: str, seed: int, out: Path, budget_s: float, steps: int) -> dict:
    """One MaskFeat run with a ``steps``-long schedule, stopped early when ``budget_s`` CPU seconds run
    out."""
    overrides = {
        "model.arch": args.arch, "model.img_size": args.img_size, "model.patch_size": args.patch,
        "hog.cell_size": args.cell, "hog.gaussian_window": args.window,
        "mask.min_num_patches": max(1, round(15 * (args.img_size // args.patch) ** 2 / 196)),
        "data.source": "fashion-mnist", "data.mean": FMNIST_MEAN, "data.std": FMNIST_STD,
        "data.num_workers": 0, "optim.lr": args.lr, "optim.warmup_epochs": 0.1,
        "train.epochs": 1, "train.batch_size": args.batch, "train.seed": seed, "train.device": "cpu",
        "train.output_dir": str(out), "train.progress": False, "train.log_interval": 50,
        "train.ckpt_interval": 1000,
        "train.resume": "", "train.overwrite": True,        # every bench run starts from scratch
        "train.text_log": "never",                           # stdout holds the bench's own report
        **variant_overrides(args, variant),
    }
    cfg = resolve_config(PRETRAIN, None, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    env = DistEnv()
    seed_everything(seed)
    model = build_pretrain_model(cfg)
    dataset = build_pretrain_dataset(cfg)
    dataset.length = steps * args.batch                 # one 'epoch' = the step budget (file i mod 60k)
    loader = build_loader(dataset, args.batch, cfg["data"], 0, 1, seed)
    step = PretrainStep(cfg["data"]["mean"], cfg["data"]["std"], env.device)
    marks = []

    def stop_at_budget(tr: Trainer) -> None:            # ends the run cleanly, as train.max_steps would
        marks.append(cpu_seconds())
        if marks[-1] - t0 > budget_s:
            tr.total_steps = tr.state.step

    trainer = start_trainer(cfg, model, loader, env, step, on_step_end=stop_at_budget)
    t0, w0 = cpu_seconds(), time.perf_counter()
    state = trainer.fit()
    losses = [rec["loss"] for rec in read_log(out / "log.jsonl").values()]
    return {"checkpoint": str(out / "last.pth"), "pretrain_min": (cpu_seconds() - t0) / 60,
            "pretrain_wall_min": (time.perf_counter() - w0) / 60, "steps": state.step,
            "scheduled_steps": steps,
            "first_loss": losses[0], "last_loss": losses[-1], "step_cpu_s": per_step(marks)}


def per_step(marks: list[float]) -> float | None:
    """CPU seconds per step from the step-end marks, the first steps (up to 5: warm-up) left out."""
    if len(marks) < 3:
        return None
    skip = min(5, (len(marks) - 1) // 2)
    return (marks[-1] - marks[skip]) / (len(marks) - 1 - skip)


def scheduled_steps(args, variant: str, seed: int, out: Path, budget_s: float) -> tuple[int, float | None]:
    """(schedule length, calibrated CPU s/step). --schedule minutes: the steps that fit ``budget_s``
    by this variant's CPU time per step, measured on a throwaway run."""
    if args.schedule == "steps":
        return args.steps, None
    probe = pretrain(args, variant, seed, out / "calibrate", float("inf"), max(3, args.calibrate_steps))
    return max(1, int(0.97 * budget_s / probe["step_cpu_s"])), probe["step_cpu_s"]   # 3% for fixed costs


def evaluate(args, ckpt: str, seed: int, out: Path) -> dict:
    """Frozen features once; k-NN and linear-probe top-1 on the 10k test images."""
    data = {"data.source": "fashion-mnist", "data.mean": FMNIST_MEAN, "data.std": FMNIST_STD,
            "data.crop_pct": 1.0, "data.val_split": "t10k", "data.train_subset": args.train_subset,
            "data.val_subset": args.test_subset, "data.num_workers": args.workers}
    model = {"model.pool": args.pool, "model.pretrained": ckpt}
    if not ckpt:
        model.update({"model.arch": args.arch, "model.img_size": args.img_size,
                      "model.patch_size": args.patch})
    kcfg = resolve_config(KNN, None, [f"{k}={json.dumps(v)}" for k, v in {**data, **model}.items()])
    env = DistEnv()
    t0 = time.perf_counter()
    seed_everything(seed)                                # the random-init baseline depends on the seed
    features, img, _ = build_frozen_features(kcfg["model"], env)
    feats, num_classes = embed_splits(features, labelled_datasets(kcfg["data"], img, seed), kcfg["data"], 256,
                                      env, seed)
    knn = knn_accuracy(*feats["train"], *feats["val"], num_classes, kcfg["knn"]["k"],
                       kcfg["knn"]["temperature"])
    probe_over = {**data, **model, "optim.name": "sgd", "optim.lr": args.probe_lr, "optim.momentum": 0.9,
                  "optim.weight_decay": 0.0, "optim.warmup_epochs": 1.0, "train.epochs": args.probe_epochs,
                  "train.batch_size": 256, "train.seed": seed, "train.device": "cpu",
                  "train.output_dir": str(out),
                  "train.resume": "", "train.overwrite": True, "train.text_log": "never",
                  "train.progress": False, "train.log_interval": 100, "train.ckpt_interval": 1000,
                  "train.eval_interval": args.probe_epochs}      # scored once, after the last epoch
    pcfg = resolve_config(LINPROBE, None, [f"{k}={json.dumps(v)}" for k, v in probe_over.items()])
    probe = probe_on_features(pcfg, env, feats, num_classes)
    return {"knn_top1": knn["top1"], "probe_top1": probe["history"][-1]["val_top1"],
            "eval_min": (time.perf_counter() - t0) / 60, "train_samples": knn["train_samples"],
            "test_samples": knn["test_samples"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t_all = time.perf_counter()
    runs = len(args.seeds) * len([v for v in args.variants if v != "random"])
    budget_s = 60 * args.budget_min / max(1, runs)
    try:
        for seed in args.seeds:
            for variant in args.variants:
                run_dir = out / f"seed{seed}_{variant}"
                row = {"seed": seed, "variant": variant, "pretrain_min": 0.0, "steps": 0}
                if variant != "random":
                    steps, row["calibrated_step_cpu_s"] = scheduled_steps(args, variant, seed, run_dir,
                                                                          budget_s)
                    row.update(pretrain(args, variant, seed, run_dir / "pretrain", budget_s, steps))
                row.update(evaluate(args, row.get("checkpoint", ""), seed, run_dir / "probe"))
                rows.append(row)
                print(f"  seed {seed} {variant:6s}: k-NN {row['knn_top1']:.2f}  "
                      f"probe {row['probe_top1']:.2f}  "
                      f"({row['pretrain_min']:.1f} + {row['eval_min']:.1f} min)",
                      file=sys.stderr, flush=True)
    except UserError as e:
        print(f"bench/quality.py: error: {e}", file=sys.stderr)
        return 2
    report = summarise(args, rows, (time.perf_counter() - t_all) / 60)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {out / 'quality.json'}")
    return 0


def summarise(args, rows: list[dict], total_min: float) -> dict:
    print(f"\nFashion-MNIST, {args.arch} {args.img_size}px patch {args.patch}, {args.pool} token; "
          f"k-NN / linear probe top-1 (%) on the 10k test images, {rows[0]['train_samples']} train images; "
          f"schedule by {args.schedule}")
    print(f"{'seed':>4}  {'variant':13} {'k-NN':>7} {'probe':>7} {'steps':>6} {'PT CPU-min':>10} "
          f"{'PT wall':>7} {'eval min':>8}")
    for r in rows:
        print(f"{r['seed']:>4}  {r['variant']:13} {r['knn_top1']:7.2f} {r['probe_top1']:7.2f} "
              f"{r['steps']:6d} {r['pretrain_min']:10.2f} {r.get('pretrain_wall_min', 0.0):7.2f} "
              f"{r['eval_min']:8.2f}")
    checks = {}
    for seed in args.seeds:
        by = {r["variant"]: r for r in rows if r["seed"] == seed}
        if "random" in by and "hog" in by:
            gain = by["hog"]["knn_top1"] - by["random"]["knn_top1"]
            checks[f"seed{seed}_hog_knn_gain"] = gain
            print(f"seed {seed}: MaskFeat-HOG k-NN - random init = {gain:+.2f} points "
                  f"({'PASS' if gain >= 5 else 'FAIL'}: >= +5)")
        for v in (v for v in by if v.startswith("visible") and "hog" in by):
            dk, dp = (by[v][k] - by["hog"][k] for k in ("knn_top1", "probe_top1"))
            checks[f"seed{seed}_{v}_minus_hog"] = {"knn": dk, "probe": dp}
            print(f"seed {seed}: {v} - hog (full encoder) = k-NN {dk:+.2f}, probe {dp:+.2f} points "
                  f"({by[v]['steps']} vs {by['hog']['steps']} steps, {by[v]['pretrain_min']:.2f} vs "
                  f"{by['hog']['pretrain_min']:.2f} CPU-min)")
    print_means(rows)
    pt_total = sum(r["pretrain_min"] for r in rows)
    print(f"pre-training {pt_total:.1f} CPU-min in all ({len([r for r in rows if r['steps']])} runs); "
          f"whole bench {total_min:.1f} min wall, {args.threads} threads")
    return {"setup": vars(args), "rows": rows, "checks": checks, "pretrain_minutes_total": pt_total,
            "total_minutes": total_min, "torch": torch.__version__}


def print_means(rows: list[dict]) -> None:
    """Mean k-NN / probe per variant over the seeds (with the spread when there are several)."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    if len(rows) == len(variants):
        return
    print(f"{'mean':>4}  {'variant':13} {'k-NN':>7} {'probe':>7}  (min..max over seeds)")
    for v in variants:
        knn = [r["knn_top1"] for r in rows if r["variant"] == v]
        probe = [r["probe_top1"] for r in rows if r["variant"] == v]
        print(f"{'':>4}  {v:13} {sum(knn) / len(knn):7.2f} {sum(probe) / len(probe):7.2f}  "
              f"(k-NN {min(knn):.2f}..{max(knn):.2f}, probe {min(probe):.2f}..{max(probe):.2f})")


if __name__ == "__main__":
    sys.exit(main())
