"""Tasks: one row per (job, modality), looked up by the config's ``modality``.

A row names the job's config schema (every key with its default) and the module that wires it:
``validate(cfg)`` (every check that can fail before anything is written), ``run(cfg, env)``
(data, model and step into the engine; returns the run's metrics) and, optionally,
``preflight(cfg, world)`` (the data checks a launcher makes before starting ``world`` processes).
Commands only parse their arguments and call ``run_task``; adding a modality is adding rows (see
docs/architecture.md).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Iterable

from ..config import ConfigError, load_yaml, parse_overrides, resolve_config
from ..schema import FINETUNE, KNN, LINPROBE, PRETRAIN, VIDEO_FINETUNE, VIDEO_PRETRAIN


@dataclass(frozen=True)
class Task:
    job: str                  # pretrain | finetune | linprobe | knn
    modality: str             # image | video
    schema: dict              # every config key and its default
    module: str               # implements validate(cfg) and run(cfg, env) -> dict
    device_key: str = "train"  # the config section whose 'device' / 'device_modules' pick the device

    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)


TASKS: dict[tuple[str, str], Task] = {(t.job, t.modality): t for t in (
    Task("pretrain", "image", PRETRAIN, "maskfeat.tasks.pretrain_image"),
    Task("pretrain", "video", VIDEO_PRETRAIN, "maskfeat.tasks.pretrain_video"),
    Task("finetune", "image", FINETUNE, "maskfeat.tasks.finetune_image"),
    Task("finetune", "video", VIDEO_FINETUNE, "maskfeat.tasks.finetune_video"),
    Task("linprobe", "image", LINPROBE, "maskfeat.tasks.linprobe"),
    Task("knn", "image", KNN, "maskfeat.tasks.knn", device_key="eval"),
)}


def find_task(job: str, modality: str) -> Task:
    if (job, modality) not in TASKS:
        known = sorted(m for j, m in TASKS if j == job)
        raise ConfigError(f"modality: {modality!r} is not a modality of maskfeat {job}; "
                          f"choose {' or '.join(known)}")
    return TASKS[(job, modality)]


def resolve_task(job: str, config_path: str | None, overrides: Iterable[str] = (),
                 aliases: dict[str, str] | None = None) -> tuple[Task, dict]:
    """The task row the recipe and overrides ask for (``modality``, default image) and its
    resolved, validated config (``aliases``: other toolkits' key names -> ours)."""
    overrides = list(overrides)
    recipe = load_yaml(config_path) if config_path else {}
    given = parse_overrides(o for o in overrides if o.split("=", 1)[0].strip() == "modality")
    task = find_task(job, given.get("modality", recipe.get("modality", "image")))
    try:
        resolve_config(task.schema, config_path, (), aliases=aliases, recipe=recipe)
    except ConfigError as e:
        raise _other_job(job, task.modality, config_path, recipe) or e from None
    cfg = resolve_config(task.schema, config_path, overrides, aliases=aliases, recipe=recipe)
    task.impl().validate(cfg)
    return task, cfg


def _other_job(job: str, modality: str, path: str, recipe: dict) -> ConfigError | None:
    """A recipe that does not fit ``job`` but fits another job's schema: say which command takes it."""
    for (other, m), task in TASKS.items():
        if other == job or m != modality:
            continue
        try:
            resolve_config(task.schema, path, (), recipe=recipe)
        except ConfigError:
            continue
        return ConfigError(f"{path} is a {other} recipe, not a {job} one: "
                           f"run `maskfeat {other} --config {path}`")
    return None


def build_config(job: str, config_path: str | None = None, overrides: Iterable[str] = ()) -> dict:
    return resolve_task(job, config_path, overrides)[1]


def execute(task: Task, cfg: dict) -> dict:
    """Run a resolved config in this process's distributed session (torchrun's, or one process)."""
    from ..engine.distributed import distributed_session

    with distributed_session(cfg[task.device_key], cfg.get("dist"), task.device_key) as env:
        return task.impl().run(cfg, env)


def preflight(task: Task, cfg: dict, world: int) -> None:
    """The checks ``world`` processes of the task would make first (the data listed, an epoch's worth
    of batches), made once by a launcher before it starts them; a no-op for rows without them."""
    check = getattr(task.impl(), "preflight", None)
    if check is not None:
        check(cfg, world)


def run_task(job: str, config_path: str | None, overrides: Iterable[str] = ()) -> dict:
    """What every training / evaluation command does: resolve, validate, run; the run's metrics."""
    task, cfg = resolve_task(job, config_path, overrides)
    return execute(task, cfg)
