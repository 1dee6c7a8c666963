"""Training that survives bad data, faults and untrusted input: odd and broken image files,
bad paths and values (exit 2, one line, nothing written), non-finite runs between two logs,
and an unwritable output folder or a full disk (torchrun cases: test_robustness_torchrun.py)."""
import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (
    ERROR,
    log_steps,
    maskfeat,
    one_error_line,
    run_trainer,
    tiny_pretrain_overrides,
)
from maskfeat.cli import main
from maskfeat.config import resolve_config
from maskfeat.data import build_pretrain_dataset, decode_rgb
from maskfeat.defaults import PRETRAIN
from maskfeat.engine import trainer as trainer_module
from maskfeat.engine.checkpoint import load_checkpoint
from maskfeat.errors import UserError

SOLID = (200, 30, 90)      # the colour of the image smaller than the crop


# -- 1. odd and broken image files ---------------------------------------------------------------

def write_odd_images(folder: Path) -> dict[str, np.ndarray]:
    """Good files of every odd kind plus two bad ones; returns each good file's source pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    src = {}
    src["cmyk.jpg"] = np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) * 2 % 256, xx * yy % 97],
                               -1).astype(np.uint8)
    Image.fromarray(src["cmyk.jpg"], "CMYK").save(folder / "cmyk.jpg", quality=95)
    v = np.linspace(0, 65535, 40 * 50).astype(np.uint16).reshape(40, 50)
    v[0, :10] = [0, 1, 127, 128, 255, 256, 383, 384, 65280, 65535]
    src["grey16.png"] = v
    Image.fromarray(v).save(folder / "grey16.png")                  # PIL mode I;16
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    src["rgba.png"] = np.dstack([rgb, rng.integers(0, 256, (30, 40, 1), dtype=np.uint8)])
    Image.fromarray(src["rgba.png"]).save(folder / "rgba.png")
    src["grey.png"] = rgb[..., 0]
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    src["palette.png"] = rgb
    Image.fromarray(rgb).quantize(16).save(folder / "palette.png")
    src["small.png"] = np.broadcast_to(np.array(SOLID, np.uint8), (15, 20, 3)).copy()   # 20x15 < 64 px crop
    Image.fromarray(src["small.png"]).save(folder / "small.png")
    src["rgb.jpg"] = rgb
    Image.fromarray(rgb).save(folder / "rgb.jpg", quality=95)
    src["xa.png"] = rgb[::-1].copy()                             # keeps x.jpg and y.png apart in sorted order
    Image.fromarray(src["xa.png"]).save(folder / "xa.png")
    (folder / "x.jpg").write_text("this is a text file, not a JPEG\n")
    (folder / "y.png").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return src


def pil_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def test_decode_rgb_of_odd_modes_and_broken_files(tmp_path):
    src = write_odd_images(tmp_path)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    assert Image.open(tmp_path / "palette.png").mode == "P"

    # CMYK JPEG: libjpeg-turbo (torchvision) against PIL's conversion; measured max 0, mean 0.
    cmyk = decode_rgb(tmp_path / "cmyk.jpg")
    diff = (cmyk.int() - pil_rgb(tmp_path / "cmyk.jpg").int()).abs()
    assert cmyk.shape == (3, 48, 64) and cmyk.dtype == torch.uint8
    assert diff.max() <= 2 and diff.float().mean() <= 0.05      # an inverted (Adobe) decode is off by ~100+

    # 16-bit grey: the top 8 bits (v >> 8) on all 3 channels. PIL's own convert("RGB") saturates
    # at 255 instead (it clips the 16-bit value), so it is not the reference here.
    g16 = decode_rgb(tmp_path / "grey16.png")
    want = torch.from_numpy((src["grey16.png"] >> 8).astype(np.uint8))
    assert g16.shape == (3, 40, 50) and all(torch.equal(g16[c], want) for c in range(3))
    assert g16[0, 0, :10].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 255, 255]

    rgba = decode_rgb(tmp_path / "rgba.png")                   # alpha dropped, not composited
    assert torch.equal(rgba, torch.from_numpy(src["rgba.png"][..., :3]).permute(2, 0, 1))
    assert torch.equal(rgba, pil_rgb(tmp_path / "rgba.png"))
    grey = decode_rgb(tmp_path / "grey.png")
    assert grey.shape == (3, 30, 40)
    assert all(torch.equal(grey[c], torch.from_numpy(src["grey.png"])) for c in range(3))
    pal = decode_rgb(tmp_path / "palette.png")
    assert torch.equal(pal, pil_rgb(tmp_path / "palette.png"))
    assert len(pal.reshape(3, -1).T.unique(dim=0)) <= 16
    assert torch.equal(decode_rgb(tmp_path / "small.png"),
                       torch.from_numpy(src["small.png"]).permute(2, 0, 1))

    for name in ("x.jpg", "y.png"):
        messages = set()
        for _ in range(3):                                     # the same message on every read
            with pytest.raises(ValueError, match="cannot decode image") as e:
                decode_rgb(tmp_path / name)
            messages.add(str(e.value))
        assert len(messages) == 1 and "0x" not in messages.pop()


def test_folder_dataset_crops_every_odd_image_to_size_and_skips_bad_files(tmp_path):
    write_odd_images(tmp_path / "imgs")
    cfg = resolve_config(PRETRAIN, None, ["model.img_size=64", "mask.min_num_patches=2", "data.source=folder",
                                          f"data.root={tmp_path / 'imgs'}"])
    ds = build_pretrain_dataset(cfg)
    names = [Path(ds.files.path(i)).name for i in range(len(ds.files))]
    assert len(ds) == 10 and names.index("x.jpg") + 2 == names.index("y.png")
    for epoch in (0, 1):
        items = {name: ds[(i, epoch)] for i, name in enumerate(names)}
        for name, item in items.items():
            assert item["images"].shape == (3, 64, 64) and item["images"].dtype == torch.uint8, name
            assert item["bad"] == (name in ("x.jpg", "y.png")), name
        assert "x.jpg" in items["x.jpg"]["bad_paths"] and "y.png" in items["y.png"]["bad_paths"]
        # x.jpg's slot is filled by the next file, xa.png (then cropped with x.jpg's own seed)
        img, bad = ds.load(names.index("x.jpg"))
        assert torch.equal(img, decode_rgb(ds.files.path(names.index("xa.png")))) and len(bad) == 1
        # 20x15 upscaled to 64x64 (not padded): every pixel keeps the solid colour
        small = items["small.png"]["images"].int()
        assert (small - torch.tensor(SOLID).view(3, 1, 1)).abs().max() <= 1


def test_cli_run_over_odd_and_bad_files_finishes_and_names_each_bad_file_once(tmp_path):
    write_odd_images(tmp_path / "imgs")
    out = tmp_path / "run"
    r = maskfeat("pretrain", *tiny_pretrain_overrides(out, **{
        "data.source": "folder", "data.root": tmp_path / "imgs", "train.batch_size": 5, "train.epochs": 3,
        "data.max_bad_fraction": 0.5}))
    assert r.returncode == 0, r.stderr[-3000:]
    skipped = [line for line in r.stderr.splitlines() if "skipped unreadable file" in line]
    assert len(skipped) == 2, r.stderr                         # 3 epochs read each bad file 3 times
    assert sum("x.jpg" in s for s in skipped) == 1 and sum("y.png" in s for s in skipped) == 1
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in records] == [1, 2, 3, 4, 5, 6]          # 10 files / 5 x 3 epochs
    assert records[-1]["bad_images"] == 6 and all(math.isfinite(rec["loss"]) for rec in records)
    assert load_checkpoint(out / "last.pth")["step"] == 6


def test_too_many_bad_files_stop_the_run_with_one_line_naming_examples(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):                       # 000.png good, 001.jpg bad, ...: never 16 bad in a row
        if i % 2:
            (imgs / f"{i:03d}.jpg").write_text("not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(imgs / f"{i:03d}.png")
    out = tmp_path / "run"
    r = maskfeat("pretrain", *tiny_pretrain_overrides(out, **{
        "data.source": "folder", "data.root": imgs, "train.batch_size": 30, "train.epochs": 4}))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    err = one_error_line(r.stderr)
    assert r.stderr.strip().splitlines()[-1] == err
    assert "failed to decode" in err and "data.max_bad_fraction=0.01" in err and ".jpg" in err
    seen, total = map(int, err.removeprefix(ERROR + "data: ").split(" images")[0].split(" of "))
    assert total >= 200 and seen > 0.01 * total
    assert len(log_steps(out / "log.jsonl")) < 8                          # stopped before the end
    named = [line.split("skipped unreadable file ")[1].split(" (")[0]
             for line in r.stderr.splitlines() if "skipped unreadable file" in line]
    assert 0 < len(named) == len(set(named)) <= 30                      # each bad file named once at most


# -- 2. bad paths and values: exit 2, one line, nothing written ----------------------------------

def bad_input(case: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(overrides, words the error line must contain) for one bad input (a missing folder and a mistyped
    key: test_sweep)."""
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        return ["data.source=folder", f"data.root={tmp_path / 'empty'}"], ["data.root", "no images", "empty"]
    if case == "list names missing files":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
        (tmp_path / "train.txt").write_text("a.jpg 0\ngone.jpg 1\n")
        return (["data.source=list", f"data.root={tmp_path}", "data.ann_file=train.txt"],
                ["data.ann_file", "missing files", "gone.jpg"])
    if case == "lr=abc":
        return ["optim.lr=abc"], ["'optim.lr' expects float, got 'abc'"]
    if case == "accumulated batch exceeds the data":   # 8 x 16 > 64 samples
        return ["train.accum_steps=16"], ["data.samples_per_epoch", "train.batch_size 8",
                                          "train.accum_steps 16"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty folder", "list names missing files", "lr=abc",
                                  "accumulated batch exceeds the data"])
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(tmp_path, case, capsys):
    overrides, words = bad_input(case, tmp_path)
    out = tmp_path / "run"
    rc = main(["pretrain", *tiny_pretrain_overrides(out), *overrides])     # in process: a config error
    err = capsys.readouterr().err
    assert rc == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    assert all(w in lines[0] for w in words), lines[0]
    assert not out.exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_folder_of_mostly_broken_files_is_one_line_exit_2_also_from_loader_workers(tmp_path, workers):
    """17 unreadable files in a row: the dataset gives up with a UserError; raised inside a
    DataLoader worker it still reaches the user as the worker's one line, not a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(17):
        (data / f"bad_{i:02d}.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 2)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "zz_good.png")
    r = maskfeat("pretrain", *tiny_pretrain_overrides(tmp_path / "run", **{
        "data.source": "folder", "data.root": str(data), "data.num_workers": workers, "train.batch_size": 2}))
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_error_line(r.stderr)
    assert "Traceback" not in r.stderr, line
    assert "16 files in a row failed to decode" in line and "bad_" in line, line


def test_folder_data_smaller_than_the_accumulated_batch_writes_nothing(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        Image.fromarray(np.full((40, 40, 3), i * 40, np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    rc = main(["pretrain", *tiny_pretrain_overrides(out, **{
        "data.source": "folder", "data.root": str(data), "train.batch_size": 2, "train.accum_steps": 4})])
    err = capsys.readouterr().err
    assert rc == 2, err[-3000:]
    assert "train.batch_size: 2 x accum 4 exceeds one epoch of data (6 samples" in one_error_line(err)
    assert not out.exists()


# -- 5. non-finite steps between two logs ---------------------------------------------------------

@pytest.mark.parametrize("n_bad", [3, 4])
def test_non_finite_run_ending_between_two_logs_still_stops_the_run(tmp_path, n_bad):
    """Steps 11..10+n_bad are NaN and step 15 (a log step) is finite again; max_nonfinite=4."""
    def nan_run(trainer, loss):
        return loss * float("nan") if 10 <= trainer.state.step < 10 + n_bad else loss

    args = ("train.max_nonfinite=4", "train.log_interval=5")
    if n_bad < 4:
        assert run_trainer(tmp_path, "nan", *args, step_hook=nan_run).state.step == 16
        assert log_steps(tmp_path / "nan" / "log.jsonl") == [5, 10, 15, 16]
        return
    with pytest.raises(UserError) as e:
        run_trainer(tmp_path, "nan", *args, step_hook=nan_run)
    assert str(e.value) == (f"train: 4 non-finite steps in a row (loss or gradients NaN/inf); stopped, "
                            f"last good checkpoint kept in {tmp_path / 'nan'}")
    records = [json.loads(line) for line in (tmp_path / "nan" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15] and records[-1]["nonfinite_steps"] == 4
    ckpt = load_checkpoint(tmp_path / "nan" / "last.pth")                  # end of epoch 1
    assert (ckpt["step"], ckpt["epoch"]) == (8, 1)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# -- 6. unwritable output folder, full disk --------------------------------------------------------

@pytest.mark.parametrize("where", ["read-only folder", "under a file"])
def test_unwritable_output_dir_is_one_line_exit_2_before_training(tmp_path, where, monkeypatch, capsys):
    if where == "read-only folder":
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        if os.geteuid() == 0:                  # root writes into a 0o555 folder: refuse as the kernel would
            real_mkdir = os.mkdir

            def mkdir(path, *a, **k):
                if Path(path).parent == parent:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real_mkdir(path, *a, **k)

            monkeypatch.setattr(os, "mkdir", mkdir)
    else:                                      # fails for root too: a path through a regular file
        parent = tmp_path / "file.txt"
        parent.write_text("x")
    out = parent / "run"
    try:
        rc = main(["pretrain", *tiny_pretrain_overrides(out)])
    finally:
        monkeypatch.undo()
        if parent.is_dir():
            parent.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 2, err[-3000:]
    reason = "Permission denied" if where == "read-only folder" else "Not a directory"
    assert err.strip() == ERROR + f"train.output_dir: cannot write to {out} ({reason})", err
    assert not out.exists() and not list(tmp_path.rglob("log.jsonl"))


def test_failed_checkpoint_write_keeps_the_previous_checkpoint_and_warns(tmp_path, monkeypatch, capsys):
    real, calls = trainer_module.save_checkpoint, []

    def disk_full_after_first(state, path):
        calls.append(Path(path).name)
        if len(calls) == 1:
            return real(state, path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer_module, "save_checkpoint", disk_full_after_first)
    trainer = run_trainer(tmp_path, "full")
    assert trainer.state.step == 16                            # the run went on
    assert calls == ["last.pth", "last.pth", "epoch_2.pth", "last.pth"]
    ckpt = load_checkpoint(tmp_path / "full" / "last.pth")     # the first write, intact
    assert (ckpt["step"], ckpt["epoch"]) == (8, 1)
    assert sorted(p.name for p in (tmp_path / "full").glob("*.pth")) == ["last.pth"]
    err = capsys.readouterr().err
    last = tmp_path / "full" / "last.pth"
    assert err.count(f"warning: checkpoint write to {last} failed (No space left on device); "
                     "previous file kept") == 2
    assert "epoch_2.pth failed (No space left on device)" in err
