"""Shared set-up of the evaluation commands: a frozen pre-trained encoder and labelled loaders."""
from __future__ import annotations

from ..data.labelled import LabelledDataset, LabelledSplit, build_labelled_datasets
from ..data.loader import build_loader
from ..data.timm_transforms import classification_transform
from ..engine.distributed import DistEnv
from ..models import build_encoder
from .classifier import Pooled
from .pretrained import load_encoder_into, read_pretrained, resolve_model_shape
from .unreadable import check_bad_fraction

# A frozen encoder is our MaskFeatViT: a pre-training checkpoint fits it exactly; a timm export
# lacks mask_token, a fine-tuned classifier brings head / fc_norm that are not used.
FROZEN_MISSING = (r"mask_token",)
FROZEN_UNUSED = (r"head\..*", r"fc_norm\..*")


def build_frozen_features(model_cfg: dict, env: DistEnv) -> tuple[Pooled, int, str]:
    """(Pooled encoder on the device, in eval mode, no gradients; its image size; a line on what was
    loaded, for the caller to print once the data has passed its checks).

    Weights from ``model.pretrained`` (shape as pre-trained unless the config says otherwise),
    or a random init (trunc-normal .02, seeded by the caller) when it is ''.
    """
    pre = read_pretrained(model_cfg["pretrained"]) if model_cfg["pretrained"] else None
    arch, img, patch = resolve_model_shape(model_cfg, pre)
    encoder = build_encoder(arch, img_size=img, patch_size=patch)
    if pre is not None:
        loaded = load_encoder_into(encoder, pre, FROZEN_MISSING, FROZEN_UNUSED)
        report = f"encoder {arch} {img}px patch {patch}: {loaded.summary(pre.path)}"
    else:
        report = f"encoder {arch} {img}px patch {patch}: random init (no model.pretrained)"
    return Pooled(encoder, model_cfg["pool"]).to(env.device).eval().requires_grad_(False), img, report


def labelled_datasets(data: dict, img_size: int, seed: int, train_aug: dict | None = None
                      ) -> tuple[LabelledDataset, LabelledDataset]:
    """(train, val) datasets, the val split's classes numbered as the train split's. With ``train_aug``
    the train set is for training (augmented; an unreadable file is replaced by the next readable
    sample, counted and named by the Trainer); without, both are evaluation sets (eval transform;
    unreadable files are marked invalid, left out and counted)."""
    training = train_aug is not None
    train_tf = classification_transform(data, img_size, train=training, aug=train_aug)
    val_tf = classification_transform(data, img_size, train=False)
    return build_labelled_datasets(data, train_tf, val_tf, seed, training)


def eval_loader(dataset, batch_size: int, data: dict, env: DistEnv, seed: int):
    """Every sample once per rank's shard, in order (padded shards are de-duplicated on gather)."""
    return build_loader(dataset, batch_size, data, env.rank, env.world, seed, shuffle=False, drop_last=False)


def num_classes_of(model_cfg: dict, *splits: LabelledSplit) -> int:
    return model_cfg.get("num_classes") or max(s.num_classes for s in splits)


def embed_splits(features, datasets: tuple, data: dict, batch_size: int, env: DistEnv, seed: int,
                 amp_dtype=None, progress: bool = False) -> tuple[dict, int]:
    """Features of the (train, val) evaluation ``datasets`` (``labelled_datasets`` without train_aug),
    extracted once: ({'train': FeatureSet, 'val': FeatureSet}, number of classes); a FeatureSet unpacks
    as (feats (n, D), labels (n,)) of the n readable samples. Unreadable files stop the command beyond
    data.max_bad_fraction (per split), else are named once."""
    from .knn import extract_features

    out = {}
    for name, ds in zip(("train", "val"), datasets):
        got = extract_features(features, eval_loader(ds, batch_size, data, env, seed), env, amp_dtype,
                               progress, desc=f"{name} features")
        check_bad_fraction(got.unreadable, got.total, data["max_bad_fraction"], name)
        for line in got.unreadable.values():
            env.print_main(f"skipped unreadable {name} file {line}")
        out[name] = got
    return out, num_classes_of({}, *(ds.split for ds in datasets))
