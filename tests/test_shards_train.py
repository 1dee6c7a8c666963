"""Training and evaluating from shards: the same numbers as the folder source, exact resume,
every sample once per epoch under torchrun, k-NN features, video clips."""
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from eval_helpers import make_folder
from helpers import REPO, cli_env, log_losses, run_trainer
from maskfeat.engine.checkpoint import load_checkpoint
from maskfeat.errors import Interrupted
from shard_helpers import make_shards, write_folder

SMALL = ["model.img_size=32", "model.patch_size=8", "train.batch_size=4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    folder = write_folder(root / "folder", per_class=14)               # 28 images
    make_shards(folder, root / "shards", shard_samples=6)              # 6, 6, 6, 6, 4
    return folder, root / "shards"


def losses(path) -> dict:
    return {step: loss for step, (loss, _) in log_losses(path).items()}


def test_shards_give_the_folder_sources_losses_when_the_order_is_the_same(tmp_path, data):
    folder, shards = data
    args = [*SMALL, "data.shuffle=false"]
    a = run_trainer(tmp_path, "folder", "data.source=folder", f"data.root={folder}", *args)
    b = run_trainer(tmp_path, "shards", "data.source=shards", f"data.root={shards}", *args)
    la, lb = losses(tmp_path / "folder" / "log.jsonl"), losses(tmp_path / "shards" / "log.jsonl")
    assert a.iters_per_epoch == b.iters_per_epoch == 7 and sorted(la) == sorted(lb) == list(range(1, 15))
    assert la == lb                                                     # bit for bit, both epochs
    run_trainer(tmp_path, "shuffled", "data.source=shards", f"data.root={shards}", *SMALL)
    assert losses(tmp_path / "shuffled" / "log.jsonl")[1] != la[1]      # (shuffling does change the batches)


def test_sigterm_mid_epoch_then_resume_sees_the_uninterrupted_runs_batches(tmp_path, data):
    _, shards = data
    # 2 loader workers: 7 batches per epoch dealt 4 + 3; the stop lands after 3 + 2 of them
    args = ["data.source=shards", f"data.root={shards}", "data.num_workers=2", "data.shuffle_buffer=5",
            *SMALL]
    ref = run_trainer(tmp_path, "ref", *args)

    def sigterm_in_step_5(trainer, loss):
        if trainer.state.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    with pytest.raises(Interrupted):
        run_trainer(tmp_path, "run", *args, step_hook=sigterm_in_step_5)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pth")
    assert (ckpt["step"], ckpt["epoch"], ckpt["iter_in_epoch"]) == (5, 0, 5)
    resumed = run_trainer(tmp_path, "run", *args, "train.resume=auto")
    assert resumed.state.step == 14
    a, b = losses(tmp_path / "ref" / "log.jsonl"), losses(tmp_path / "run" / "log.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, 15))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-7), step
    for (n, x), y in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), n


def test_torchrun_two_gloo_ranks_see_every_sample_of_an_epoch_once(tmp_path):
    folder = write_folder(tmp_path / "folder", per_class=24)           # 48 images
    shards = tmp_path / "shards"
    make_shards(folder, shards, shard_samples=10)                    # 10, 10, 10, 10, 8: no multiple of 2 x 2
    args = [f"train.output_dir={tmp_path / 'run'}", "train.progress=false", "model.arch=vit-pico",
            "mask.min_num_patches=2", "train.epochs=2", "optim.warmup_epochs=0.5", "data.source=shards",
            f"data.root={shards}", "data.num_workers=2", *SMALL]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", str(REPO / "tests" / "helpers" / "ddp_sample_indices.py"),
                        str(tmp_path), *args],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 12                          # 48 / (2 ranks x 4) steps x 2 epochs
    for epoch in (0, 1):
        per_rank = [[i for e, batch in s for i in batch if e == epoch] for s in seen]
        assert len(per_rank[0]) == len(per_rank[1]) == 24
        assert sorted(per_rank[0] + per_rank[1]) == list(range(48))    # each sample once across the job
    first = [[i for e, b in s for i in b if e == 0] for s in seen]
    second = [[i for e, b in s for i in b if e == 1] for s in seen]
    assert first != second                                             # a new order each epoch


def labelled_folder_and_shards(tmp_path, shard_samples: int):
    """A train / val class-folder tree and its shards, one `maskfeat prepare` per split."""
    root = make_folder(tmp_path / "folder", n_train=6, n_val=3)
    for split in ("train", "val"):
        make_shards(root / split, tmp_path / "shards" / split, shard_samples=shard_samples)
    return root, tmp_path / "shards"


def test_knn_features_from_labelled_shards_equal_the_folders(tmp_path):
    from maskfeat.config import resolve_config
    from maskfeat.defaults import KNN
    from maskfeat.engine.distributed import DistEnv
    from maskfeat.eval.frozen import (
        build_frozen_features,
        embed_splits,
        labelled_datasets,
    )

    root, shards = labelled_folder_and_shards(tmp_path, 4)
    common = ["data.num_workers=0", "data.pin_memory=false", "model.arch=vit-pico", "model.img_size=32",
              "model.patch_size=8", "model.pretrained=", "data.train_subset=11"]
    env = DistEnv()
    feats = {}
    for name, src in (("folder", ["data.source=folder", f"data.root={root}"]),
                      ("shards", ["data.source=shards", f"data.root={shards}"])):
        cfg = resolve_config(KNN, None, common + src)
        torch.manual_seed(0)
        encoder, img, _ = build_frozen_features(cfg["model"], env)
        feats[name] = embed_splits(encoder, labelled_datasets(cfg["data"], img, 0), cfg["data"], 4, env, 0)
    (f, n_f), (s, n_s) = feats["folder"], feats["shards"]
    assert n_f == n_s == 3
    assert f["train"][0].shape == (11, 96) and f["val"][0].shape == (9, 96)   # the train subset, all val
    for split in ("train", "val"):
        assert torch.equal(f[split][1], s[split][1])                   # labels
        assert torch.equal(f[split][0], s[split][0])                   # features, bit for bit


def _video_annotations(root, n: int = 4) -> None:
    from helpers.video import write_video

    lines = []
    for i in range(n):
        write_video(root / f"v{i}.mp4", 20 + 3 * i)
        lines.append(f"v{i}.mp4 {i % 2}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")


def test_video_pretraining_from_shards_equals_the_list_source(tmp_path):
    from maskfeat.data.prepare import PrepareSpec, prepare

    root = tmp_path / "videos"
    root.mkdir()
    _video_annotations(root)
    m = prepare(PrepareSpec("video", str(root), str(tmp_path / "shards"), ann_file="train.txt",
                            shard_samples=3, progress=False))
    assert m.kind == "video" and [s.samples for s in m.shards] == [3, 1] and m.label_counts == {0: 2, 1: 2}
    common = ["modality=video", "model.arch=mvitv2-pico", "model.img_size=32", "model.num_frames=4",
              "data.sampling_rate=2", "data.decode_short_side=0", "mask.unit_size=[2,16,16]",
              "mask.min_num_patches=1", "train.batch_size=2", "data.shuffle=false", "train.epochs=1"]
    run_trainer(tmp_path, "list", *common, "data.source=kinetics", f"data.root={root}",
                "data.ann_file=train.txt")
    run_trainer(tmp_path, "shards", *common, "data.source=shards", f"data.root={tmp_path / 'shards'}")
    a, b = losses(tmp_path / "list" / "log.jsonl"), losses(tmp_path / "shards" / "log.jsonl")
    assert sorted(a) == [1, 2] and a == b


def test_prepare_cuts_clips_to_the_centred_span(tmp_path):
    import av

    from maskfeat.data import video_clips as C
    from maskfeat.data.prepare import PrepareSpec, prepare

    root = tmp_path / "videos"
    root.mkdir()
    _video_annotations(root, n=2)                                      # 20 and 23 frames
    (root / "train.txt").write_text("v0.mp4 0\nv1.mp4 1\nmissing.mp4 0\n")
    m = prepare(PrepareSpec("video", str(root), str(tmp_path / "cut"), ann_file="train.txt", clip_frames=9,
                            progress=False))
    assert m.total == 2 and m.skipped == [{"input": "missing.mp4", "reason": "listed but not found"}]
    from shard_helpers import tar_samples
    stored = list(tar_samples(tmp_path / "cut" / m.shards[0].name).values())
    for n, (start, sample) in enumerate(zip((5, 7), stored)):          # (20 - 9) // 2, (23 - 9) // 2
        cut = C.decode(sample["mp4"])
        src = C.decode(root / f"v{n}.mp4")[start:start + 9]
        assert cut.shape == src.shape == (9, 3, 48, 64)
        mse = ((cut.float() - src.float()) ** 2).mean().item()
        assert 10 * np.log10(255 ** 2 / mse) > 30                      # re-encoded (lossy), PSNR in dB
        with av.open(io.BytesIO(sample["mp4"])) as c:
            assert c.streams.video[0].codec_context.name == "h264"


def test_linear_probe_on_images_trains_the_same_from_labelled_shards(tmp_path):
    from eval_helpers import folder_overrides
    from maskfeat.cli import main

    root, shards = labelled_folder_and_shards(tmp_path, 5)
    common = ["train.batch_size=6", "train.epochs=2", "train.progress=false", "optim.warmup_epochs=0.5",
              "data.cache_features=false", "data.shuffle=false", "aug.scale=[0.6,1.0]"]
    heads = {}
    for name, src in (("folder", []), ("shards", ["data.source=shards", f"data.root={shards}"])):
        out = tmp_path / name
        assert main(["linprobe", *folder_overrides(root), *common, *src, f"train.output_dir={out}"]) == 0
        heads[name] = (json.loads((out / "metrics.json").read_text())["history"],
                       torch.load(out / "last.pth", weights_only=True)["model"])
    (hist_f, w_f), (hist_s, w_s) = heads["folder"], heads["shards"]
    assert len(hist_f) == 2 and hist_f == hist_s                       # val top-1 / loss per epoch
    for k in w_f:                                                    # random-augmented training, same weights
        assert torch.equal(w_f[k], w_s[k]), k
