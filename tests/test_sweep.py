"""Issue 11's sweep: bad values, files and checkpoints across every command. Each case ends with exit 0
(the bad input skipped and counted, or nothing to do) or exit 2 with one stderr line naming the key
or file, never a traceback, and the run folder it was pointed at (a finished pre-training run) is
byte-identical afterwards. A table, not a list of tests: one more case is one more row."""
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from eval_helpers import make_folder
from helpers import REPO, Evil, png_bomb, snapshot, tiny_pretrain_overrides
from maskfeat.cli import main

FINETUNE = "configs/finetune/vit-base-p16_in1k.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_run):
    """Everything the cases point at: a finished run (the folder that must not change), files."""
    root = tmp_path_factory.mktemp("sweep")
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
    return w


def pretrain(w, *extra):
    return ["pretrain", *tiny_pretrain_overrides(w["run"]), *extra]


def evaluation(job, w, *extra, data="labelled"):
    section = "eval" if job == "knn" else "train"
    out = f"{section}.output_dir={w['run']}"
    return [job, f"model.pretrained={w['ckpt']}", "data.source=folder", f"data.root={w[data]}",
            "data.num_workers=0", out, f"{section}.progress=false",
            *(["train.batch_size=4"] if job != "knn" else []), *extra]


# (case, argv from the world, expected exit status, words the one stderr line (exit 2) or stderr (exit 0)
# holds)
CASES = [
    ("mask.ratio=1.5", lambda w: pretrain(w, "mask.ratio=1.5"), 2, ["mask.ratio", "1.5"]),
    ("mask.ratio=0", lambda w: pretrain(w, "mask.ratio=0"), 2, ["mask.ratio"]),
    ("mask.ratio=1.0", lambda w: pretrain(w, "mask.ratio=1.0"), 2, ["mask.ratio"]),
    ("mask.ratio=-0.2", lambda w: pretrain(w, "mask.ratio=-0.2"), 2, ["mask.ratio", "-0.2"]),
    ("unknown arch", lambda w: pretrain(w, "model.arch=vit-giant"), 2, ["model.arch", "vit-giant"]),
    ("optim.lr=0", lambda w: pretrain(w, "optim.lr=0"), 2, ["optim.lr"]),
    ("optim.lr=nan", lambda w: pretrain(w, "optim.lr=nan"), 2, ["optim.lr", "nan"]),
    ("optim.lr<0", lambda w: pretrain(w, "optim.lr=-1e-3"), 2, ["optim.lr"]),
    ("patch_size=0", lambda w: pretrain(w, "model.patch_size=0"), 2, ["model.patch_size"]),
    ("img_size=0", lambda w: pretrain(w, "model.img_size=0"), 2, ["model.img_size"]),
    ("hog.nbins=0", lambda w: pretrain(w, "hog.nbins=0"), 2, ["hog.nbins"]),
    ("hog cell 5", lambda w: pretrain(w, "hog.cell_size=5"), 2, ["cell_size 5"]),
    ("num_workers=-1", lambda w: pretrain(w, "data.num_workers=-1"), 2, ["data.num_workers"]),
    ("scale of one value", lambda w: pretrain(w, "data.scale=[0.5]"), 2, ["data.scale"]),
    ("mean of two values", lambda w: pretrain(w, "data.mean=[1,2]"), 2, ["data.mean"]),
    ("epochs=0", lambda w: pretrain(w, "train.epochs=0"), 2, ["train.epochs"]),
    ("epochs=-3", lambda w: pretrain(w, "train.epochs=-3"), 2, ["train.epochs"]),
    ("batch_size=0", lambda w: pretrain(w, "train.batch_size=0"), 2, ["train.batch_size"]),
    ("amp=fp8", lambda w: pretrain(w, "train.amp=fp8"), 2, ["train.amp", "fp8"]),
    ("max_image_pixels<0", lambda w: pretrain(w, "data.max_image_pixels=-1"), 2, ["data.max_image_pixels"]),
    ("resume: other shape", lambda w: pretrain(w, f"train.resume={w['other_shape']}", "train.overwrite=true"),
     2, ["train.resume", "another model shape"]),
    ("resume: plain state dict", lambda w: pretrain(w, f"train.resume={w['plain']}", "train.overwrite=true"),
     2, ["train.resume", "plain state dict"]),
    ("resume: missing", lambda w: pretrain(w, "train.resume=/no/such.pth"), 2, ["/no/such.pth"]),
    ("resume: junk", lambda w: pretrain(w, f"train.resume={w['junk']}", "train.overwrite=true"), 2,
     ["junk.pth"]),
    ("fresh start over a run", lambda w: pretrain(w, "train.resume="), 2, ["holds a run", "train.overwrite"]),
    ("the same command again", lambda w: pretrain(w), 0, ["already finished at step 16"]),
    ("modality=audio", lambda w: pretrain(w, "modality=audio"), 2, ["modality", "audio"]),
    ("mistyped key", lambda w: pretrain(w, "optim.lrr=1"), 2, ["optim.lrr", "optim.lr"]),
    ("python tag in a recipe", lambda w: ["pretrain", "--config", str(w["evil_yaml"])], 2,
     ["evil.yaml", "refused"]),
    ("a finetune recipe", lambda w: ["pretrain", "--config", str(REPO / FINETUNE)], 2, ["finetune recipe"]),
    ("folder not found", lambda w: pretrain(w, "data.source=folder", "data.root=/no/such/dir"), 2,
     ["data.root", "/no/such/dir"]),
    ("list file not found", lambda w: pretrain(w, "data.source=list", f"data.root={w['root']}",
                                               "data.ann_file=nope.txt"), 2, ["data.ann_file", "nope.txt"]),
    ("pipe: not allowed", lambda w: pretrain(w, "data.source=shards", f"data.root={w['root']}",
                                             "data.shards=pipe:cat x.tar"), 2, ["allow_pipe"]),
    ("finetune: checkpoint not found", lambda w: evaluation("finetune", w, "model.pretrained=/no/such.pth"),
     2, ["/no/such.pth"]),
    ("finetune: junk checkpoint", lambda w: evaluation("finetune", w, f"model.pretrained={w['junk']}"), 2,
     ["junk.pth"]),
    ("finetune: mixup<0", lambda w: evaluation("finetune", w, "aug.mixup=-1"), 2, ["aug.mixup"]),
    ("finetune: val class unknown", lambda w: evaluation("finetune", w, data="unknown_class"), 2, ["stars"]),
    ("finetune: stray image", lambda w: evaluation("finetune", w, data="stray"), 2, ["loose.png"]),
    ("finetune: unknown arch", lambda w: evaluation("finetune", w, "model.arch=foo"), 2,
     ["model.arch", "foo"]),
    ("finetune: resume into a pre-training run", lambda w: evaluation("finetune", w), 2,
     ["train.resume", "another model"]),
    ("linprobe: optimizer", lambda w: evaluation("linprobe", w, "optim.name=adam"), 2,
     ["optim.name", "adam"]),
    ("linprobe: batch of 1", lambda w: evaluation("linprobe", w, "train.batch_size=1"), 2,
     ["train.batch_size"]),
    ("linprobe: pool", lambda w: evaluation("linprobe", w, "model.pool=max"), 2, ["model.pool", "max"]),
    ("knn: k=0", lambda w: evaluation("knn", w, "knn.k=0"), 2, ["knn.k"]),
    ("knn: temperature=0", lambda w: evaluation("knn", w, "knn.temperature=0"), 2, ["knn.temperature"]),
    ("knn: folder not found", lambda w: evaluation("knn", w, "data.root=/no/such/dir"), 2, ["/no/such/dir"]),
    ("knn: output is a file", lambda w: evaluation("knn", w, f"eval.output_dir={w['a_file']}"), 2,
     ["a_file.txt"]),
    ("knn: a val class unreadable", lambda w: evaluation("knn", w, data="broken_val"), 2,
     ["max_bad_fraction", "disk"]),
    ("knn: a bomb skipped and counted", lambda w: evaluation("knn", w, "data.max_bad_fraction=0.5",
                                                             f"eval.output_dir={w['root'] / 'knn_ok'}",
                                                             data="bombed_val"), 0,
     ["bomb", "000.png", "on 5 of 6 val images (1 unreadable skipped)"]),
    ("visualize: mask ratio", lambda w: ["visualize", str(w["ckpt"]), str(w["photo"]), "--mask-ratio", "1.5",
                                         "--out-dir", str(w["run"])], 2, ["--mask-ratio"]),
    ("visualize: out-dir a file", lambda w: ["visualize", str(w["ckpt"]), str(w["photo"]), "--out-dir",
                                             str(w["a_file"])], 2, ["--out-dir", "a_file.txt"]),
    ("visualize: bomb", lambda w: ["visualize", str(w["ckpt"]), str(w["photo"]), str(w["bomb"]), "--out-dir",
                                   str(w["run"])], 2, ["bomb.png"]),
    ("visualize: junk checkpoint", lambda w: ["visualize", str(w["junk"]), str(w["photo"]), "--out-dir",
                                              str(w["run"])], 2, ["junk.pth"]),
    ("visualize: plain state dict", lambda w: ["visualize", str(w["plain"]), str(w["photo"]), "--out-dir",
                                               str(w["run"])], 2, ["plain.pth", "config"]),
    ("visualize: missing image", lambda w: ["visualize", str(w["ckpt"]), "/no/such.png", "--out-dir",
                                            str(w["run"])], 2, ["/no/such.png"]),
    ("convert: no output folder", lambda w: ["convert", str(w["ckpt"]), "/no/such/dir/y.pth"], 2,
     ["/no/such/dir"]),
    ("convert: junk", lambda w: ["convert", str(w["junk"]), str(w["run"] / "x.safetensors")], 2,
     ["junk.pth"]),
    ("convert: code in a pickle", lambda w: ["convert", str(w["evil_pth"]), str(w["run"] / "x.safetensors")],
     2, ["evil.pth", "refused"]),
    ("convert: onto itself", lambda w: ["convert", str(w["ckpt"]), str(w["ckpt"])], 2,
     ["overwrite the input"]),
    ("convert: missing input", lambda w: ["convert", "/no/such.pth", str(w["run"] / "x.safetensors")], 2,
     ["/no/such.pth"]),
    ("compare-loss: missing log", lambda w: ["compare-loss", "/no/log.jsonl", str(w["run"] / "log.jsonl")], 2,
     ["/no/log.jsonl"]),
    ("compare-loss: bad JSON", lambda w: ["compare-loss", str(w["bad_log"]), str(w["run"] / "log.jsonl")], 2,
     ["bad.jsonl:2"]),
    ("compare-loss: fractional step", lambda w: ["compare-loss", str(w["float_step"]),
                                                 str(w["run"] / "log.jsonl")], 2,
     ["float_step.jsonl:1", "step"]),
    ("compare-loss: three columns", lambda w: ["compare-loss", str(w["three_cols"]),
                                               str(w["run"] / "log.jsonl")], 2, ["three.csv", "two columns"]),
]


def test_every_bad_input_is_one_line_or_skipped_and_the_run_folder_is_untouched(world, capsys):
    before = snapshot(world["run"])
    tracebacks, changed, wrong = [], [], []
    for name, argv, want, words in CASES:
        capsys.readouterr()
        try:
            rc = main(argv(world))
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
    print(f"sweep: {len(CASES)} cases across pretrain, finetune, linprobe, knn, visualize, convert, "
          f"compare-loss; {len(tracebacks)} tracebacks, {len(changed)} changed the run folder")
    assert len(CASES) >= 40
    assert not tracebacks, tracebacks
    assert not changed, changed
    assert not wrong, "\n".join(wrong)
