"""model.grad_checkpointing: the same losses step for step (image ViT through the trainer, MViT and
video ViT), and fewer activation bytes saved for backward (bench/activation_memory.py's counter)."""
import pytest
import torch

from helpers import load_bench, log_losses, run_trainer
from maskfeat.models import build_pretrain_model
from maskfeat.schema import VIDEO_PRETRAIN


def test_image_vit_same_losses_for_10_steps(tmp_path):
    runs = {on: run_trainer(tmp_path, f"ckpt_{on}", "train.max_steps=10", "model.drop_path_rate=0.1",
                            f"model.grad_checkpointing={str(on).lower()}") for on in (False, True)}
    assert runs[True].model.encoder.grad_checkpointing and not runs[False].model.encoder.grad_checkpointing
    plain, ckpt = (log_losses(tmp_path / f"ckpt_{on}" / "log.jsonl") for on in (False, True))
    assert sorted(plain) == list(range(1, 11)) and sorted(ckpt) == sorted(plain)
    for step in plain:
        assert ckpt[step][0] == pytest.approx(plain[step][0], rel=1e-6, abs=1e-7), step


def video_losses(arch: str, on: bool, steps: int = 10) -> tuple[list[float], int]:
    """Losses of ``steps`` AdamW steps on fixed clips; and the bytes saved for backward in one step."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VIDEO_PRETRAIN.items()}
    cfg["model"].update(arch=arch, img_size=32, num_frames=4, drop_path_rate=0.1, grad_checkpointing=on)
    torch.manual_seed(0)
    model = build_pretrain_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    clips, mask = torch.randn(2, 3, 4, 32, 32, generator=g), torch.rand(2, 2, 2, 2, generator=g) < 0.5
    losses, saved = [], 0
    counter = load_bench("activation_memory").saved_activation_bytes
    for i in range(steps):
        def step():
            loss = model(clips, mask)
            loss = loss.loss if hasattr(loss, "loss") else loss
            loss.backward()
            losses.append(loss.item())
        if i == 0:
            saved = counter(model, step)
        else:
            step()
        opt.step()
        opt.zero_grad()
    return losses, saved


@pytest.mark.parametrize("arch", ["mvitv2-pico", "vit3d-pico"])
def test_video_models_same_losses_fewer_saved_bytes(arch):
    (plain, saved_plain), (ckpt, saved_ckpt) = video_losses(arch, False), video_losses(arch, True)
    assert len(plain) == 10 and len(set(plain)) > 5                        # it trains
    assert ckpt == pytest.approx(plain, rel=1e-6, abs=1e-7)
    assert saved_ckpt < 0.7 * saved_plain, (saved_ckpt, saved_plain)
