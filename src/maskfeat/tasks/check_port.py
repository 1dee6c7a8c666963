"""The port check (``maskfeat check-port``): the first N steps of a pre-training recipe on a chosen
device, with everything that could make two runs differ fixed, ready to be compared with a
reference loss curve: by default the one shipped in ``maskfeat/references`` (this very check on
CPU in fp32, made by ``scripts/make_port_reference.py``), else the user's ``--reference LOG``.

Settings applied over the recipe (a ``key=value`` on the command line still wins):
train.max_steps = --steps, train.log_interval 1 (a loss point per step), train.seed 0,
model.drop_path_rate 0, train.amp auto (as the device allows), train.resume '' with
train.overwrite true, train.output_dir work_dirs/check_port/<device>. Crops, flips and masks are
seeded by (seed, epoch, sample index), so the data are the same on every device and worker count.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..config import flatten, parse_overrides
from ..engine.device import device_type
from ..errors import UserError
from . import Task, execute, resolve_task

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "references"
REFERENCE_LOG = REFERENCE_DIR / "check_port_cpu_fp32.jsonl"      # {"step", "loss"} per line
REFERENCE_INFO = REFERENCE_DIR / "check_port_cpu_fp32.json"      # versions, settings, command, date
DEFAULT_STEPS = 100
LOG_INTERVAL = 1
PLOT_NAME = "loss_vs_reference.png"
REPORT_NAME = "check_port.txt"

# Settings a port may change without changing the curve it is checked against: the device and its
# precision, where and how the run is written, how the data are fed and how the HOG is computed.
MAY_DIFFER = frozenset((
    "train.amp", "train.device", "train.device_modules", "train.output_dir", "train.progress",
    "train.text_log", "train.resume", "train.overwrite", "train.compile", "train.compile_mode",
    "hog.impl", "data.num_workers", "data.pin_memory", "data.persistent_workers", "dist.backend",
))


@dataclass
class PortCheck:
    task: Task
    cfg: dict
    reference: Path
    shipped: bool            # the reference is the one shipped in the package

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg["train"]["output_dir"])

    @property
    def run_log(self) -> Path:
        return self.output_dir / "log.jsonl"

    @property
    def plot(self) -> Path:
        return self.output_dir / PLOT_NAME

    @property
    def report(self) -> Path:
        return self.output_dir / REPORT_NAME


def port_settings(steps: int) -> list[str]:
    """The port check's overrides (before the user's own)."""
    return [f"train.max_steps={steps}", f"train.log_interval={LOG_INTERVAL}", "train.seed=0",
            "model.drop_path_rate=0.0", "train.amp=auto", "train.resume=", "train.overwrite=true",
            "train.text_log=always"]


def resolve_port_check(config: str | None, overrides: Iterable[str] = (), *, steps: int = DEFAULT_STEPS,
                       device: str | None = None) -> tuple[Task, dict]:
    """The check's task row and resolved, validated config: the recipe, the port settings, then the
    user's overrides (``device``: train.device)."""
    if steps < 1:
        raise UserError(f"--steps: must be at least 1, got {steps}")
    user = list(overrides) + ([f"train.device={device}"] if device else [])
    given = parse_overrides(user)
    task, cfg = resolve_task("pretrain", config, user)
    settings = port_settings(steps)
    if "train.output_dir" not in given:
        settings.append(f"train.output_dir=work_dirs/check_port/{device_type(cfg['train']['device'])}")
    return resolve_task("pretrain", config, settings + user)


def plan_port_check(config: str | None, overrides: Iterable[str] = (), *, steps: int = DEFAULT_STEPS,
                    device: str | None = None, reference: str | None = None) -> PortCheck:
    """The check and its reference (the shipped one must fit the settings); every check, nothing written."""
    task, cfg = resolve_port_check(config, overrides, steps=steps, device=device)
    if reference is not None:
        return PortCheck(task, cfg, Path(reference), shipped=False)
    check_reference_applies(task, cfg, read_reference_info())
    return PortCheck(task, cfg, REFERENCE_LOG, shipped=True)


def read_reference_info(path: Path = REFERENCE_INFO) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"shipped port reference {path}: cannot read ({e.__class__.__name__}); "
                        "pass --reference LOG") from None
    if not isinstance(info, dict) or not isinstance(info.get("settings"), dict):
        raise UserError(f"shipped port reference {path}: no 'settings' recorded; pass --reference LOG")
    return info


def reference_settings(cfg: dict) -> dict:
    """The settings that decide the curve (every key but those in MAY_DIFFER), JSON-normalised."""
    return {k: json.loads(json.dumps(v)) for k, v in flatten(cfg).items() if k not in MAY_DIFFER}


def check_reference_applies(task: Task, cfg: dict, info: dict) -> None:
    """The shipped reference is one run; a check with other settings is refused, never compared."""
    defaults, ref = reference_settings(task.schema), info["settings"]
    now = reference_settings(cfg)
    ref = {k: ref.get(k, defaults.get(k)) for k in now}    # a key newer than the reference: its default
    diffs = [k for k in now if now[k] != ref[k]]
    if diffs:
        shown = ", ".join(f"{k}={now[k]!r} (reference {ref[k]!r})" for k in diffs[:3])
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise UserError(f"the shipped reference is the default check ({info.get('command', 'check-port')}); "
                        f"this check differs in {shown}{more}: pass --reference LOG, a log of the same "
                        "command run where you trust it (e.g. on CPU with --device cpu train.amp=none)")


def run_port_check(check: PortCheck) -> bool:
    """Run the check's steps in this process (torchrun's session too); True on the main process."""
    execute(check.task, check.cfg)
    return int(os.environ.get("RANK", "0")) == 0
