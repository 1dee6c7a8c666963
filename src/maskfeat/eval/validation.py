"""Validation at the end of an epoch (any classifier, any input key) and best-checkpoint keeping."""
from __future__ import annotations

from .metrics import evaluate
from .unreadable import check_bad_fraction, coverage


class BestTracker:
    """Best validation top-1 so far (checkpointed with the run, so resume keeps it)."""

    def __init__(self):
        self.best, self.best_epoch, self.best_ema = -1.0, 0, -1.0

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_ema": self.best_ema}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_ema = state["best"], state["best_epoch"], state["best_ema"]


class EpochEval:
    """on_epoch_end: validate the model (and its EMA), keep best.pth, return the metrics to log.

    Unreadable val files are left out of the numbers, named once (the first time they are met),
    counted in the printed line, and stop the run beyond data.max_bad_fraction."""

    def __init__(self, loader, env, tracker: BestTracker, ema=None, interval: int = 1,
                 input_key: str = "images"):
        self.loader, self.env, self.tracker, self.ema, self.interval = loader, env, tracker, ema, interval
        self.input_key = input_key
        self.history: list[dict] = []
        self.named: set[int] = set()

    def _check_unreadable(self, m: dict, limit: float) -> None:
        for i, name in m["unreadable"].items():
            if i not in self.named:
                self.named.add(i)
                self.env.print_main(f"skipped unreadable val file {name}")
        check_bad_fraction(m["unreadable"], m["total"], limit, "val")

    def __call__(self, trainer, epoch: int) -> dict | None:
        if epoch % self.interval and epoch != trainer.epochs:
            return None
        m = evaluate(trainer.model, self.loader, self.env, self.input_key, trainer.dtype)
        self._check_unreadable(m, trainer.cfg["data"].get("max_bad_fraction", 1.0))
        out = {"val_top1": m["top1"], "val_top5": m["top5"], "val_loss": m["loss"],
               "val_samples": m["samples"]}
        if m["unreadable"]:
            out["val_unreadable"] = len(m["unreadable"])
        if self.ema is not None:
            e = evaluate(self.ema.module, self.loader, self.env, self.input_key, trainer.dtype)
            out.update(ema_top1=e["top1"], ema_top5=e["top5"])
            self.tracker.best_ema = max(self.tracker.best_ema, e["top1"])
        improved = m["top1"] > self.tracker.best
        if improved:
            self.tracker.best, self.tracker.best_epoch = m["top1"], epoch
        out.update(best_top1=self.tracker.best, best_epoch=self.tracker.best_epoch)
        if improved:
            trainer.save("best")
        self.env.print_main(f"epoch {epoch}: val top-1 {m['top1']:.2f} top-5 {m['top5']:.2f}"
                            + (f" (EMA {out['ema_top1']:.2f})" if self.ema is not None else "")
                            + f" {coverage(m['samples'], m['total'], 'val')}"
                            + f"; best {self.tracker.best:.2f} @ epoch {self.tracker.best_epoch}")
        self.history.append({"epoch": epoch, **out})
        return out
