import math
import os
import pickle
import signal

import pytest
import torch

from helpers import Evil, log_losses, run_trainer, tiny_pretrain_overrides
from maskfeat.engine.checkpoint import load_checkpoint, save_checkpoint
from maskfeat.engine.distributed import DistEnv
from maskfeat.engine.optim import build_optimizer, build_scheduler
from maskfeat.engine.trainer import Trainer, amp_dtype
from maskfeat.errors import Interrupted, UserError
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer


def mmengine_chained_lrs(base: float, f: float, warmup: int, total: int, eta_min: float) -> list[float]:
    """The lr of every step as mmengine computes it: LinearLR(start_factor=f, begin=0, end=W) then
    CosineAnnealingLR(T_max=T-W, eta_min, begin=W, end=T), both in their chainable (recursive) form,
    one scheduler.step() per iteration. An independent reference of the closed form in WarmupCosine."""
    lr, out = base, []
    n = warmup - 1                                          # LinearLR.total_iters = end - begin - 1
    for i in range(total):
        if i < warmup:                                      # LinearLR's last_step = i
            lr = base * f if i == 0 else lr * (1 + (1 - f) / (n * f + (i - 1) * (1 - f)))
        else:                                               # CosineAnnealingLR's last_step = i - W
            k, t_max = i - warmup, total - warmup
            if k > 0 and (k - 1 - t_max) % (2 * t_max) == 0:
                lr = lr + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
            elif k > 0:
                lr = ((1 + math.cos(math.pi * k / t_max)) / (1 + math.cos(math.pi * (k - 1) / t_max))
                      * (lr - eta_min) + eta_min)
        out.append(lr)
    return out


def test_schedule_equals_mmengine_linear_warmup_and_cosine_at_every_step():
    """The ImageNet pre-training recipe (30 of 300 epochs warmup, start factor 1e-6, cosine to 1e-6),
    with 7 steps per epoch: every step's lr equals mmengine's within 1e-9 relative, and the peak
    is reached at step W-1 as mmengine's LinearLR(begin=0, end=W) reaches it."""
    from maskfeat.tasks.pretrain import build_config

    cfg = build_config("configs/pretrain/maskfeat_vit-base-p16_in1k.yaml", [])
    o = cfg["optim"]
    opt = build_optimizer(torch.nn.Linear(4, 4), o, global_batch=2048)
    base = opt.param_groups[0]["lr"]
    assert base == pytest.approx(1.6e-3)
    iters, epochs = 7, cfg["train"]["epochs"]
    sched = build_scheduler(opt, o, iters_per_epoch=iters, epochs=epochs)
    warmup, total = int(o["warmup_epochs"]) * iters, epochs * iters
    ref = mmengine_chained_lrs(base, o["warmup_start_factor"], warmup, total, o["min_lr"])
    for i, want in enumerate(ref):
        sched.step_update(i)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-9, abs=0), i
    assert ref[warmup - 1] == pytest.approx(base, rel=1e-12) and ref[warmup] == pytest.approx(base, rel=1e-12)
    assert ref[warmup - 2] < base and ref[-1] > o["min_lr"]


def test_short_warmup_reaches_the_peak_one_step_early():
    """The issue's case: lr 1.5e-3, a 5-step warmup from ~0: step 1 is lr / 4 (mmengine), not lr / 5."""
    o = dict(lr=1.5e-3, base_batch_size=256, weight_decay=0.05, betas=[0.9, 0.999], eps=1e-8,
             warmup_epochs=1, warmup_start_factor=1e-6, min_lr=1e-6)
    opt = build_optimizer(torch.nn.Linear(4, 4), o, global_batch=256)
    sched = build_scheduler(opt, o, iters_per_epoch=5, epochs=10)
    lrs = []
    for i in range(7):
        sched.step_update(i)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[1] == pytest.approx(1.5e-3 * (1e-6 + (1 - 1e-6) / 4))      # 3.75e-4
    assert lrs[4] == pytest.approx(1.5e-3) and lrs[5] == pytest.approx(1.5e-3)
    assert lrs[6] == pytest.approx(1e-6 + (1.5e-3 - 1e-6) * (1 + math.cos(math.pi / 45)) / 2)


def test_amp_dtype_choice():
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("fp16", cpu) == torch.float16   # fp16 forced
    assert amp_dtype("bf16", cpu) == torch.bfloat16 and amp_dtype("none", cpu) is None
    with pytest.raises(UserError, match="train.amp"):
        amp_dtype("fp8", cpu)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_checkpoint_carrying_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(UserError, match=r"refused: the pickle would run code \(builtins.print\)"):
        load_checkpoint(path)
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04trunc")
    with pytest.raises(UserError, match="trunc.pth"):
        load_checkpoint(tmp_path / "trunc.pth")


def test_gradient_accumulation_matches_the_full_batch(tmp_path, monkeypatch):
    """Batch 4 x accum 2 against batch 8: the gradient handed to each of 3 optimizer steps equals the
    full batch's within 1e-5 of its largest entry (measured 5e-7), and with no warmup the weights move
    by > 1e-4 (measured 1.9e-4) yet end within 1e-7 (measured 1.5e-8). (Adam's first step and clipping
    do not see the gradient's scale, so comparing the weights after one warmup step proves nothing.)"""
    grads = []
    inner = Trainer._optimizer_step

    def record_grads(trainer):
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return inner(trainer)

    monkeypatch.setattr(Trainer, "_optimizer_step", record_grads)
    common = ("train.max_steps=3", "optim.warmup_epochs=0")
    full = run_trainer(tmp_path, "full", "train.batch_size=8", *common)
    accum = run_trainer(tmp_path, "accum", "train.batch_size=4", "train.accum_steps=2", *common)
    assert full.global_batch == accum.global_batch == 8 and len(grads) == 6
    for step, (a, b) in enumerate(zip(grads[:3], grads[3:])):
        assert a.keys() == b.keys() and len(a) > 10
        for n in a:
            assert (a[n] - b[n]).abs().max() <= 1e-5 * a[n].abs().max(), (step, n)
    start = build_trainer(build_config(None, tiny_pretrain_overrides(tmp_path / "start")), DistEnv()).model
    moved = max((w - w0).abs().max().item() for w, w0 in zip(full.model.parameters(), start.parameters()))
    assert moved > 1e-4
    for (n, a), b in zip(full.model.state_dict().items(), accum.model.state_dict().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7), n


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    ref = run_trainer(tmp_path, "ref")
    assert ref.state.step == 16

    def send_sigterm_at_step_5(trainer, loss):
        if trainer.state.step == 4:            # during the 5th step
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    with pytest.raises(Interrupted) as stop:                           # exit status 128 + 15 from the CLI
        run_trainer(tmp_path, "run", step_hook=send_sigterm_at_step_5)
    assert stop.value.signum == signal.SIGTERM and "stopped by SIGTERM at step 5" in str(stop.value)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pth")
    assert (ckpt["step"], ckpt["epoch"], ckpt["iter_in_epoch"]) == (5, 0, 5)
    resumed = run_trainer(tmp_path, "run", "train.resume=auto")
    assert resumed.state.step == 16
    a, b = log_losses(tmp_path / "ref" / "log.jsonl"), log_losses(tmp_path / "run" / "log.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, 17))
    for step in a:
        assert a[step][0] == pytest.approx(b[step][0], abs=1e-7), step     # loss
        assert a[step][1] == pytest.approx(b[step][1], rel=1e-12), step    # lr
    for (n, x), y in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), n


def test_non_finite_step_is_skipped_and_counted(tmp_path):
    snapshots = {}

    def nan_at_step_3(trainer, loss):
        if trainer.state.step == 2:
            snapshots["before"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            snapshots["opt"] = {k: v["exp_avg"].clone() for k, v in trainer.optimizer.state.items()}
            return loss * float("nan")
        if trainer.state.step == 3 and "after" not in snapshots:
            snapshots["after"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            snapshots["opt_after"] = {k: v["exp_avg"].clone() for k, v in trainer.optimizer.state.items()}
        return loss

    trainer = run_trainer(tmp_path, "nan", "train.max_steps=5", step_hook=nan_at_step_3)
    for k in snapshots["before"]:
        assert torch.equal(snapshots["before"][k], snapshots["after"][k]), k
    for k in snapshots["opt"]:
        assert torch.equal(snapshots["opt"][k], snapshots["opt_after"][k])
    logged = log_losses(tmp_path / "nan" / "log.jsonl")
    import json
    last = json.loads((tmp_path / "nan" / "log.jsonl").read_text().splitlines()[-1])
    assert last["nonfinite_steps"] == 1 and trainer.state.step == 5 and math.isfinite(logged[5][0])


def test_too_many_non_finite_steps_stop_the_run(tmp_path):
    with pytest.raises(UserError, match="3 non-finite steps in a row"):
        run_trainer(tmp_path, "nan", "train.max_nonfinite=3", step_hook=lambda t, loss: loss * float("nan"))
