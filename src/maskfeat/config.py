"""Configs are data: nested YAML mappings checked against a command's defaults.

``resolve_config(defaults, path, overrides)`` merges a YAML recipe and dotted
``key=value`` overrides (values parsed as YAML scalars, never evaluated) over a
command's defaults. Unknown keys and wrong types raise ``ConfigError`` with a
one-line message naming the key (and the closest valid key).
"""
from __future__ import annotations

import copy
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import ConfigError

__all__ = ["ConfigError", "flatten", "merge", "parse_overrides", "builtin_config", "load_yaml",
           "resolve_config", "save_config", "RENAMED"]

# Old key names -> the new ones (the same meaning has one key in both modalities): a recipe or command
# line still using one gets a one-line error naming the new key. Renamed values: schema.spec.renamed_values.
RENAMED = {
    "pretrained": "model.pretrained",
    "data.mixup": "aug.mixup",
    "data.cutmix": "aug.cutmix",
    "data.label_smoothing": "aug.label_smoothing",
    "data.random_erasing": "aug.re_prob",
    "data.rand_augment_ops": "aug.rand_augment_ops",
    "data.rand_augment_magnitude": "aug.rand_augment_magnitude",
    "data.ann_file": "data.train_ann_file",      # the labelled jobs (video fine-tuning, as the image ones)
}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _closest(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.75)
    # Also try matching only the last component (e.g. 'lrr' -> 'optim.lr').
    leaf = {v.rsplit(".", 1)[-1]: v for v in valid}
    leaf_match = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaf), n=1, cutoff=0.75)
    best = match[0] if match else None
    if leaf_match and (best is None or difflib.SequenceMatcher(None, key, best).ratio() < 0.75):
        best = leaf[leaf_match[0]]
    return f" (did you mean '{best}'?)" if best else ""


def _check_type(key: str, value: Any, default: Any, where: str) -> Any:
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        value = [value] if isinstance(value, str) else value       # a bare name is a one-item list
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{where}: '{key}' expects {type(default).__name__}, got {value!r}")
    return value


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def merge(base: dict, update: dict, where: str, aliases: dict[str, str] | None = None) -> dict:
    """Deep-merge flat or nested ``update`` into a copy of ``base``; only known keys allowed."""
    out = copy.deepcopy(base)
    valid = flatten(base)
    sections = {k.rsplit(".", i)[0] for k in valid for i in range(1, k.count(".") + 1)}
    for key, value in flatten(update).items():
        key = (aliases or {}).get(key, key)
        if key not in valid:
            if RENAMED.get(key) in valid:
                raise ConfigError(f"{where}: '{key}' was renamed '{RENAMED[key]}'")
            if key in sections:
                raise ConfigError(f"{where}: '{key}' is a section, give one of its keys")
            raise ConfigError(f"{where}: unknown config key '{key}'{_closest(key, valid)}")
        _set(out, key, _check_type(key, value, valid[key], where))
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['optim.lr=1e-3', 'data.scale=[0.2,1.0]'] -> {'optim.lr': 0.001, ...} (YAML scalars)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{key}': cannot parse value {raw!r} ({yaml_problem(e)})") from None
        if isinstance(value, str) and _looks_like_float(raw):
            value = float(raw)  # YAML 1.1 reads '1e-3' as a string
        out[key] = value
    return out


def _looks_like_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def yaml_problem(e: yaml.YAMLError) -> str:
    """One line on why YAML was refused: a tag that would build a Python object, or bad syntax."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark else ""
    problem = getattr(e, "problem", "") or ""
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.split("tag", 1)[1].strip(" '").replace("tag:yaml.org,2002:", "!!")
        return (f"{where}YAML tag '{tag}' refused: configs are plain data (numbers, strings, lists, "
                "mappings); tags that build objects or run code are not allowed")
    return f"{where}not valid YAML ({problem})" if problem else f"{where}not valid YAML"


def builtin_config(name: str) -> Path:
    """A recipe shipped inside the package, e.g. 'pretrain/maskfeat_vit-base-p16_in1k'."""
    path = resources.files("maskfeat") / "configs" / (name if name.endswith(".yaml") else name + ".yaml")
    return Path(str(path))


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        shipped = builtin_config(str(path).removeprefix("configs/"))
        if shipped.is_file():
            path = shipped
        else:
            raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return data


def resolve_config(defaults: dict, path: str | None = None, overrides: Iterable[str] = (),
                   aliases: dict[str, str] | None = None, recipe: dict | None = None) -> dict:
    """``defaults`` <- the YAML at ``path`` (``recipe``: that file already loaded) <- overrides."""
    cfg = copy.deepcopy(defaults)
    if path:
        cfg = merge(cfg, load_yaml(path) if recipe is None else recipe, str(path), aliases)
    return merge(cfg, parse_overrides(overrides), "command line", aliases)


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
