"""The ``README.md`` model card of a ``--to timm-dir`` export, from the checkpoint and its run folder.

What is known goes in (method, recipe and key settings, data, steps / epochs, final loss, k-NN or
fine-tune top-1 from ``log.jsonl`` / ``knn.json`` beside the checkpoint); what is not is left out.
The front matter is the Hugging Face model-card header (library, tags, licence).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunFacts:
    """What the checkpoint and the files beside it tell about the run."""
    kind: str                                  # "pre-trained encoder" | "fine-tuned classifier"
    source: str                                # reader: maskfeat | mmpretrain | slowfast
    config: dict | None = None
    step: int | None = None
    epoch: int | None = None
    figures: dict = field(default_factory=dict)  # name -> value, in the order shown


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_figures(folder: Path) -> dict:
    """Final loss, k-NN and validation top-1 found in ``folder`` (missing files give nothing)."""
    out: dict = {}
    log = folder / "log.jsonl"
    rows = _jsonl(log) if log.is_file() else []
    if losses := [r["loss"] for r in rows if isinstance(r.get("loss"), (int, float))]:
        out["final training loss (log.jsonl)"] = f"{losses[-1]:.4f}"
    if knn := [r for r in rows if any(k.startswith("knn") and "top1" in k for k in r)]:
        key = next(k for k in knn[-1] if k.startswith("knn") and "top1" in k)
        out[f"k-NN top-1 during pre-training (epoch {knn[-1].get('epoch', '?')})"] = f"{knn[-1][key]:.2f}"
    if vals := [r["val_top1"] for r in rows if isinstance(r.get("val_top1"), (int, float))]:
        out["validation top-1, last / best epoch"] = f"{vals[-1]:.2f} / {max(vals):.2f}"
    knn_file = folder / "knn.json"
    try:
        knn_json = json.loads(knn_file.read_text()) if knn_file.is_file() else {}
    except (json.JSONDecodeError, OSError):
        knn_json = {}
    if isinstance(knn_json, dict) and isinstance(knn_json.get("top1"), (int, float)):
        out[f"k-NN top-1 (knn.json, k={knn_json.get('k', '?')})"] = f"{knn_json['top1']:.2f}"
    return out


def _settings(cfg: dict) -> list[tuple[str, object]]:
    """The recipe's key settings, as (dotted key, value), those present in ``cfg``."""
    keys = ("modality", "model.arch", "model.img_size", "model.patch_size", "model.target",
            "model.global_pool", "model.num_classes", "model.pretrained", "mask.ratio", "hog.nbins",
            "hog.cell_size", "hog.gaussian_window", "data.source", "data.root", "optim.lr",
            "optim.weight_decay", "train.batch_size", "train.epochs", "train.max_steps", "train.seed")
    out = []
    for dotted in keys:
        node: object = cfg
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node not in (None, ""):
            out.append((dotted, node))
    return out


def model_card(facts: RunFacts, architecture: str, model_args: dict, license_name: str,
               folder_name: str) -> str:
    """The card's markdown text."""
    cfg = facts.config or {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    dataset = data.get("source", "unknown") + (f" ({data['root']})" if data.get("root") else "")
    method = ("MaskFeat (masked feature prediction: masked patches regress their "
              f"{cfg.get('model', {}).get('target', 'hog').upper()} features)")
    if facts.kind == "fine-tuned classifier":
        method += ", then supervised fine-tuning"
    lines = ["---", "library_name: timm", f"license: {license_name}",
             "tags:", "- image-classification" if facts.kind == "fine-tuned classifier"
             else "- image-feature-extraction",
             "- timm", "- maskfeat", "---", "",
             f"# {folder_name}", "",
             f"A {facts.kind} (timm `{architecture}`) exported by `maskfeat convert --to timm-dir`.", "",
             "| | |", "|---|---|", f"| method | {method} |", f"| data | {dataset} |",
             f"| checkpoint origin | {facts.source} |"]
    if facts.step is not None:
        epochs = facts.epoch if facts.epoch is not None else "?"
        lines.append(f"| steps / epochs done | {facts.step} / {epochs} |")
    lines += [f"| {name} | {value} |" for name, value in facts.figures.items()]
    lines.append(f"| licence | {license_name} |")
    if settings := _settings(cfg):
        lines += ["", "## Recipe (key settings)", ""] + [f"- `{k}`: {json.dumps(v)}" for k, v in settings]
    if model_args:
        lines += ["", "## timm model arguments", "", f"`{architecture}` with `{json.dumps(model_args)}`"]
    head = ("features = model.forward_features(x)  # tokens; model(x): pooled features (num_classes=0)"
            if facts.kind == "pre-trained encoder" else "logits = model(x)")
    lines += ["", "## Load", "", "```python", "import timm", "",
              f'model = timm.create_model("local-dir:{folder_name}", pretrained=True).eval()',
              "cfg = timm.data.resolve_data_config({}, model=model)   # input size, mean, std",
              "transform = timm.data.create_transform(**cfg)", head, "```", "",
              "From a model hub: upload the folder as is; load with `hf-hub:<user>/<repo>`.", ""]
    return "\n".join(lines)
