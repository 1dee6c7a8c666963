"""`maskfeat pretrain` with a video recipe, end to end on the embedded clips."""
import json

import pytest
import torch

from maskfeat.cli import main
from maskfeat.config import builtin_config


def test_pretrain_dispatches_on_modality_and_trains(tmp_path):
    out = tmp_path / "run"
    rc = main(["pretrain", "modality=video", "model.arch=mvitv2-pico", "model.img_size=64",
               "model.num_frames=8", "data.sampling_rate=2", "data.decode_short_side=64",
               "mask.min_num_patches=2", "data.samples_per_epoch=16", "data.num_workers=0", "train.epochs=1",
               "train.log_interval=1", f"train.output_dir={out}", "train.progress=false"])
    assert rc == 0
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(logs) == 2 and all(0.0 < r["loss"] < 1.0 for r in logs)
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["config"]["modality"] == "video" and "encoder.mask_token" in ckpt["model"]
    assert ckpt["model"]["head.weight"].shape[0] == 108


def test_video_recipes_resolve_and_bad_keys_are_named(capsys):
    from maskfeat.tasks.pretrain import build_config

    cfg = build_config(str(builtin_config("pretrain/maskfeat_mvitv2-s-16x4_k400")), [])
    assert cfg["model"]["arch"] == "mvitv2-s" and cfg["mask"]["unit_size"] == [2, 32, 32]
    assert cfg["optim"]["lr"] * 512 / cfg["optim"]["base_batch_size"] == pytest.approx(1.6e-3)
    rc = main(["pretrain", "modality=video", "mask.unit_sise=[2,16,16]"])
    assert rc == 2 and "mask.unit_sise" in capsys.readouterr().err
