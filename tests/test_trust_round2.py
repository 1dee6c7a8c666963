"""Issue 18, items 9, 10, 13, 14 and 15: counts, logs, checkpoints, stale temp files, k-NN's k."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_pretrain_overrides
from maskfeat.cli import main


def _photos(folder, n, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"p{k}.png")


# -- item 9: each bad sample counted once ----------------------------------------------------------
def test_item9_a_bad_neighbour_in_the_skip_chain_is_counted_once(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    _photos(imgs, 6)
    (imgs / "1_0_text.jpg").write_text("a text file, not a JPEG\n")
    (imgs / "1_0_zero.jpg").write_bytes(b"")                 # sorted first: text, zero, p0 .. p5
    out = tmp_path / "run"
    argv = tiny_pretrain_overrides(out, **{"data.source": "folder", "data.root": imgs, "train.epochs": 1,
                                           "data.shuffle": "false", "data.max_bad_fraction": 0.5,
                                           "train.batch_size": 8})
    assert main(["pretrain", *argv]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped unreadable file") == 2
    assert err.count("1_0_text.jpg") == 1 and err.count("1_0_zero.jpg") == 1
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1] and records[-1]["bad_images"] == 2   # main: 3


def test_item9_video_bad_files_are_counted_once_each(tmp_path):
    from helpers.video import bad_video_folder
    from maskfeat.data.video_loader import build_video_pretrain_dataset
    cfg = bad_video_folder(tmp_path, "pyav")
    ds = build_video_pretrain_dataset(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = [ds[(i, 0)] for i in range(4)]
    assert [it["bad"] for it in items] == [1, 1, 1, 0]                  # main: [3, 2, 1, 0] (6 for 3 bad)
    assert items[0]["bad_paths"].count("\n") == 2                         # the chain is still named in full


# -- item 10: Excel CSV ------------------------------------------------------------------------------
EXCEL = {  # name: (bytes, (steps, losses) or the words of the one error line)
    "the issue's case": (b"\xef\xbb\xbf10,0.5\r\n20,0.4\r\n", ([10, 20], [0.5, 0.4])),
    "a header, CRLF": (b"\xef\xbb\xbfstep,loss\r\n10,0.5\r\n20,0.4\r\n", ([10, 20], [0.5, 0.4])),
    "two BOMs": (b"\xef\xbb\xbf\xef\xbb\xbf10,0.5\r\n20,0.4\r\n", ([10, 20], [0.5, 0.4])),
    "trailing empty cells": (b"10,0.5,,\r\n20,0.4,,\r\n", ([10, 20], [0.5, 0.4])),
    "sep= line": (b"sep=,\r\nstep,loss\r\n10,0.5\r\n", ([10], [0.5])),
    "CR only": (b"\xef\xbb\xbf10,0.5\r20,0.4\r", ([10, 20], [0.5, 0.4])),
    "partly numeric first row": (b"10,oops\r\n20,0.4\r\n", ":1: not numbers"),
    "header-like first cell": (b"step,0.5\r\n20,0.4\r\n", ":1: not numbers"),
}


@pytest.mark.parametrize("case", EXCEL)
def test_item10_excel_csv_rows_are_headers_only_when_not_numeric(tmp_path, case):
    from maskfeat.errors import UserError
    from maskfeat.logs import read_loss_curve
    data, want = EXCEL[case]
    path = tmp_path / "excel.csv"
    path.write_bytes(data)
    if isinstance(want, str):
        with pytest.raises(UserError, match=want):
            read_loss_curve(path)
        return
    curve = read_loss_curve(path)
    assert curve.fmt == "csv" and curve.steps.tolist() == want[0] and curve.losses.tolist() == want[1]


def test_item10_compare_loss_reads_the_excel_csv_of_the_issue(tmp_path, capsys):
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf10,0.5\r\n20,0.4\r\n")
    (tmp_path / "a.jsonl").write_text('{"step": 10, "loss": 0.5}\n{"step": 20, "loss": 0.4}\n')
    assert main(["compare-loss", str(tmp_path / "excel.csv"), str(tmp_path / "a.jsonl"), "--no-plot",
                 "--min-points", "2"]) == 0
    out = capsys.readouterr().out
    assert "csv, 2 points" in out and "PASS" in out


# -- item 13: what a file given as a checkpoint is ----------------------------------------------------
class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /dev/null",))


def _not_checkpoints(root):
    import pickle
    import zipfile

    import torch
    files = {}
    Image.new("RGB", (8, 8)).save(root / "photo.pth", format="PNG")
    files["photo.pth"] = r"not a PyTorch checkpoint \(PNG image\)"
    Image.new("RGB", (8, 8)).save(root / "photo_jpg.pth", format="JPEG")
    files["photo_jpg.pth"] = r"not a PyTorch checkpoint \(JPEG image\)"
    with zipfile.ZipFile(root / "archive.pth", "w") as z:
        z.writestr("weights.txt", "1 2 3")
    files["archive.pth"] = r"not a PyTorch checkpoint \(zip archive without data.pkl\)"
    (root / "recipe.pth").write_text("model:\n  arch: vit-base\n")
    files["recipe.pth"] = r"not a PyTorch checkpoint \(YAML / text file\)"
    (root / "config.pth").write_text('{"model": {"arch": "vit-base"}}')
    files["config.pth"] = r"not a PyTorch checkpoint \(JSON text\)"
    (root / "empty.pth").write_bytes(b"")
    files["empty.pth"] = r"not a PyTorch checkpoint \(empty file\)"
    torch.save({"model": _Evil()}, root / "evil_zip.pth")
    files["evil_zip.pth"] = r"refused: the pickle would run code \(os.system\)"
    (root / "evil_raw.pth").write_bytes(pickle.dumps({"model": _Evil()}))          # protocol 4, framed
    files["evil_raw.pth"] = r"refused: the pickle would run code \(os.system\)"
    return files


def test_item13_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path):
    from maskfeat.engine.checkpoint import load_checkpoint
    from maskfeat.errors import UserError
    from maskfeat.eval.pretrained import read_pretrained
    for name, words in _not_checkpoints(tmp_path).items():
        for read in (load_checkpoint, read_pretrained):
            with pytest.raises(UserError, match=words) as got:
                read(tmp_path / name)
            assert "weights_only` argument" not in str(got.value) and "\n" not in str(got.value)


# -- item 14: temp files of killed writers ------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    return int(proc.stdout)                               # exited: no process has this PID now


def test_item14_the_next_run_removes_stale_temp_files_of_dead_writers_only(tmp_path, capsys):
    import os
    out = tmp_path / "run"
    out.mkdir()
    dead = out / f".last.pth.tmp{_dead_pid()}"
    dead.write_bytes(b"\0" * (3 << 20))                    # a checkpoint cut by SIGKILL
    live = out / f".epoch_1.pth.tmp{os.getppid()}"         # a live process's: left alone
    live.write_bytes(b"\0" * 10)
    look_alike = out / ".notes.tmpfile"
    look_alike.write_text("not ours")
    argv = tiny_pretrain_overrides(out, **{"train.epochs": 1, "data.samples_per_epoch": 8})
    assert main(["pretrain", *argv]) == 0
    err = capsys.readouterr().err
    assert not dead.exists() and live.exists() and look_alike.exists() and (out / "last.pth").is_file()
    notes = [ln for ln in err.splitlines() if "temp file(s) of killed writers" in ln]
    assert len(notes) == 1 and dead.name in notes[0] and "3.0 MB" in notes[0] and live.name not in notes[0]


def test_item14_knn_output_folder_too(tmp_path, capsys):
    import os

    from eval_helpers import folder_overrides, make_folder
    root = make_folder(tmp_path / "shapes", n_train=2, n_val=1, size=32)
    out = tmp_path / "knn"
    out.mkdir()
    dead = out / f".knn.json.tmp{_dead_pid()}"
    dead.write_text("{")
    live = out / f".knn.json.tmp{os.getppid()}"          # a live process (not this one, which writes it)
    live.write_text("{")
    argv = [*folder_overrides(root), "knn.k=2", "eval.progress=false", f"eval.output_dir={out}"]
    assert main(["knn", *argv]) == 0
    assert not dead.exists() and live.exists()
    assert "removed 1 temp file(s) of killed writers" in capsys.readouterr().err
    assert json.loads((out / "knn.json").read_text())["k"] == 2


# -- item 15: k-NN's k and top-5 on a tiny set -------------------------------------------------------
def test_item15_k_is_capped_at_the_train_set_and_top5_is_null_with_few_classes(tmp_path, capsys):
    from eval_helpers import folder_overrides, make_folder
    root = make_folder(tmp_path / "shapes", n_train=3, n_val=1, size=32)      # 3 classes x 3 train images
    out = tmp_path / "knn"
    assert main(["knn", *folder_overrides(root), "eval.progress=false", f"eval.output_dir={out}"]) == 0
    got = json.loads((out / "knn.json").read_text())
    assert got["train_samples"] == 9 and got["k"] == 9 and got["k_requested"] == 20      # main: k 20
    assert got["top5"] is None and "capped at the 9" in got["note"]                      # main: top-5 100.0
    err = capsys.readouterr().err
    assert "note: knn.k=20 capped at the 9 readable train samples" in err and "top-5 n/a" in err


def test_item15_top5_is_kept_with_more_than_five_classes():
    import torch

    from maskfeat.eval.knn import knn_accuracy
    train = torch.eye(6).repeat(2, 1)
    labels = torch.arange(6).repeat(2)
    got = knn_accuracy(train, labels, torch.eye(6), torch.arange(6), 6, k=4)
    assert got["top1"] == 100.0 and got["top5"] == 100.0 and got["k"] == 4 and "note" not in got
