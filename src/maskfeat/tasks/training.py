"""What every training task does around the engine: the Trainer with the loss-curve plot as its
``after_fit`` hook, on a run folder taken by the run-folder step (every check, then lock, clean, config)."""
from __future__ import annotations

from torch import nn

from ..engine.distributed import DistEnv
from ..engine.logger import check_trackers
from ..engine.run_folder import open_run_folder
from ..engine.trainer import StepFn, Trainer
from ..viz.loss_curve import plot_loss_curve


def plot_losses(trainer: Trainer) -> None:
    """The run's loss curve, ``<output_dir>/loss_curve.png``, from its log.jsonl."""
    plot_loss_curve(trainer.logger.path, trainer.output_dir / "loss_curve.png", trainer.cfg)


def start_trainer(cfg: dict, model: nn.Module, loader, env: DistEnv, step: StepFn, **hooks) -> Trainer:
    """A Trainer (``hooks``: its keyword options) attached to its run folder, ready to ``fit``."""
    check_trackers(cfg["train"].get("report_to", []))
    trainer = Trainer(cfg, model, loader, env, step, after_fit=plot_losses, **hooks)
    trainer.attach(open_run_folder(cfg, env, trainer.model.state_dict(), trainer.total_steps))
    return trainer
