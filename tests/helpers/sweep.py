"""The sweep's harness (tests/test_sweep*.py): the world of bad files and folders the cases point at,
the argv builders of the cases, and the runner that checks every case (exit 0 or one stderr line,
no traceback, the run folder byte-identical afterwards)."""
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval_helpers import make_folder
from helpers import Evil, png_bomb, snapshot, tiny_pretrain_overrides
from maskfeat.cli import main


def build_world(root, tiny_run) -> dict:
    """Everything the cases point at, under ``root``: a finished run (the folder that must not change),
    files."""
    root = Path(root)
    run = root / "run"
    shutil.copytree(tiny_run, run)
    w = {"root": root, "run": run, "ckpt": run / "last.pth"}
    other = root / "other"
    assert main(["pretrain", *tiny_pretrain_overrides(other, **{"model.img_size": 32,
                                                                "train.max_steps": 1})]) == 0
    w["other_shape"] = other / "last.pth"
    w["plain"] = root / "plain.pth"
    torch.save(torch.load(w["ckpt"], weights_only=True)["model"], w["plain"])
    w["junk"] = root / "junk.pth"
    w["junk"].write_bytes(b"not a checkpoint at all")
    w["evil_pth"] = root / "evil.pth"
    w["evil_pth"].write_bytes(pickle.dumps({"model": Evil()}))
    w["evil_yaml"] = root / "evil.yaml"
    w["evil_yaml"].write_text('model:\n  arch: !!python/object/apply:os.system ["echo pwned"]\n')
    w["bomb"] = root / "bomb.png"
    w["bomb"].write_bytes(png_bomb())
    w["photo"] = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(w["photo"])
    w["a_file"] = root / "a_file.txt"
    w["a_file"].write_text("I am a file")
    garbage = root / "garbage"
    garbage.mkdir()
    for i in range(20):
        (garbage / f"{i:02d}.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(200)))
    w["garbage"] = garbage
    w["labelled"] = make_folder(root / "labelled", n_train=4, n_val=2, size=32)
    unknown = make_folder(root / "unknown_class", n_train=4, n_val=2, size=32)
    shutil.copytree(unknown / "val" / "disk", unknown / "val" / "stars")
    w["unknown_class"] = unknown
    stray = make_folder(root / "stray", n_train=4, n_val=2, size=32)
    shutil.copy(w["photo"], stray / "train" / "loose.png")
    w["stray"] = stray
    broken = make_folder(root / "broken_val", n_train=4, n_val=2, size=32)
    for f in (broken / "val" / "disk").iterdir():
        f.write_bytes(b"")                                   # a whole val class unreadable
    w["broken_val"] = broken
    bombed = make_folder(root / "bombed_val", n_train=4, n_val=2, size=32)
    (bombed / "val" / "disk" / "000.png").write_bytes(png_bomb())
    w["bombed_val"] = bombed
    w["bad_log"] = root / "bad.jsonl"
    w["bad_log"].write_text('{"step": 1, "loss": 0.5}\n{not json\n')
    w["float_step"] = root / "float_step.jsonl"
    w["float_step"].write_text('{"step": 1.5, "loss": 0.5}\n')
    w["three_cols"] = root / "three.csv"
    w["three_cols"].write_text("step,loss,lr\n1,0.5,0.1\n")
    trust_round2_world(w, root)
    return w


ODD = [" space .png", "ünïcødé_猫.png", "-dash.png", "x" * 200 + ".png", "semi;colon's.png", "new\nline.png"]


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True)
    return int(proc.stdout)                                   # exited: no process has this PID now


def trust_round2_world(w: dict, root) -> None:
    """Issue 18's files: what is not a checkpoint, Excel CSVs, odd names, damaged shards, stale temps."""
    for name, fmt in (("png.pth", "PNG"), ("jpeg.pth", "JPEG")):
        Image.open(w["photo"]).save(root / name, format=fmt)
    with zipfile.ZipFile(root / "zip.pth", "w") as z:
        z.writestr("weights.txt", "1 2 3")
    (root / "recipe.pth").write_text("model:\n  arch: vit-base\n")
    (root / "empty.pth").write_bytes(b"")
    (root / "excel.csv").write_bytes(b"\xef\xbb\xbf1,0.5\r\n2,0.4\r\n")
    (root / "excel2.csv").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfstep,loss,,\r\n1,0.5,,\r\n2,0.4,,\r\n")
    (root / "excel_ref.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
    (root / "empty.csv").write_bytes(b"\xef\xbb\xbf\r\n")
    (root / "oops.csv").write_bytes(b"1,oops\r\n2,0.4\r\n")
    odd = root / "odd names"
    odd.mkdir()
    for name in ODD:
        shutil.copy(w["photo"], odd / name)
    w["odd"] = odd
    pair = root / "bad_pair"
    pair.mkdir()
    for k in range(6):
        shutil.copy(w["photo"], pair / f"p{k}.png")
    (pair / "1_0_text.jpg").write_text("a text file, not a JPEG\n")
    (pair / "1_0_zero.jpg").write_bytes(b"")
    stale = root / "knn_stale"
    stale.mkdir()
    (stale / f".knn.json.tmp{_dead_pid()}").write_text("{")
    assert main([*prepare(str(w["labelled"] / "train"), "sh")(w), "--shard-samples", "4"]) == 0
    for damage in ("trunc", "missing", "badjson", "nomanifest", "notjson"):
        shutil.copytree(root / "sh", root / f"sh_{damage}")
    first = root / "sh_trunc" / "shard-000000.tar"
    first.write_bytes(first.read_bytes()[:3000])
    (root / "sh_missing" / "shard-000000.tar").unlink()
    (root / "sh_badjson" / "manifest.json").write_text('{"shards": [')
    (root / "sh_nomanifest" / "manifest.json").unlink()
    (root / "sh_notjson" / "manifest.json").write_bytes(b"\x89PNG\r\n\x1a\n")


def pretrain(w, *extra):
    return ["pretrain", *tiny_pretrain_overrides(w["run"]), *extra]


def evaluation(job, w, *extra, data="labelled"):
    section = "eval" if job == "knn" else "train"
    out = f"{section}.output_dir={w['run']}"
    return [job, f"model.pretrained={w['ckpt']}", "data.source=folder", f"data.root={w[data]}",
            "data.num_workers=0", out, f"{section}.progress=false",
            *(["train.batch_size=4"] if job != "knn" else []), *extra]


def at(w, name: str) -> str:
    return str(w["root"] / name)


def elsewhere(w, name):
    return f"train.output_dir={at(w, name)}"


def folder(w, name):
    return ["data.source=folder", f"data.root={at(w, name)}", elsewhere(w, "out_" + name)]


def weights(job, name):
    return lambda w: evaluation(job, w, f"model.pretrained={at(w, name)}")


def compare(name, ref="excel_ref.jsonl"):
    """compare-loss of two-point logs (their reading is the case; --min-points 1 lets two points judge)."""
    return lambda w: ["compare-loss", at(w, name), at(w, ref), "--no-plot", "--min-points", "1"]


def shards(damage):
    return lambda w: pretrain(w, "data.source=shards", f"data.root={at(w, 'sh_' + damage)}", "train.epochs=1",
                              elsewhere(w, "out_sh_" + damage), "train.batch_size=4")


def prepare(root, out):
    return lambda w: ["prepare", "--input", "folder", "--root", root, "--out", at(w, out), "--procs", "1",
                      "--no-progress"]


def run_sweep(world: dict, cases: list, capsys) -> None:
    """Run every case in process; fail naming the cases that raised, changed the run folder, or ended
    with another exit status or stderr than their row says."""
    before = snapshot(world["run"])
    tracebacks, changed, wrong, commands = [], [], [], []
    for name, argv, want, words in cases:
        capsys.readouterr()
        try:
            args = argv(world)
            commands += [args[0]] if args[0] not in commands else []
            rc = main(args)
        except BaseException as e:                                 # what a user would see as a traceback
            tracebacks.append(f"{name}: {type(e).__name__}: {e}")
            continue
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln]
        one_line = len(lines) == 1 and ": error: " in lines[0]
        if (rc != want or (want == 2 and not one_line) or not all(w in err for w in words)
                or "Traceback" in err):
            wrong.append(f"{name}: exit {rc}, stderr {err.strip()[-400:]!r}")
        if snapshot(world["run"]) != before:
            changed.append(name)
            before = snapshot(world["run"])
    print(f"sweep: {len(cases)} cases across {', '.join(commands)}; "
          f"{len(tracebacks)} tracebacks, {len(changed)} changed the run folder")
    assert not tracebacks, tracebacks
    assert not changed, changed
    assert not wrong, "\n".join(wrong)
