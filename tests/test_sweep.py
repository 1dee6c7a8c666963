"""Issue 11's sweep: bad values, files and checkpoints across every command. Each case ends with exit 0
(the bad input skipped and counted, or nothing to do) or exit 2 with one stderr line naming the key
or file, never a traceback, and the run folder it was pointed at (a finished pre-training run) is
byte-identical afterwards. A table, not a list of tests: one more case is one more row."""
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

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
    return lambda w: ["compare-loss", at(w, name), at(w, ref), "--no-plot"]


def shards(damage):
    return lambda w: pretrain(w, "data.source=shards", f"data.root={at(w, 'sh_' + damage)}", "train.epochs=1",
                              elsewhere(w, "out_sh_" + damage), "train.batch_size=4")


def prepare(root, out):
    return lambda w: ["prepare", "--input", "folder", "--root", root, "--out", at(w, out), "--procs", "1",
                      "--no-progress"]


# (case, argv from the world, expected exit status, words the one stderr line (exit 2) or stderr (exit 0) holds)
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
    ("compare-loss: fractional step", lambda w: ["compare-loss", str(w["float_step"]), str(w["run"] / "log.jsonl")],
     2, ["float_step.jsonl:1", "step"]),
    ("compare-loss: three columns", lambda w: ["compare-loss", str(w["three_cols"]), str(w["run"] / "log.jsonl")],
     2, ["three.csv", "two columns"]),
    # issue 18 (items 9, 10, 13, 14, 15) and more of the same kind
    ("finetune: a PNG renamed .pth",
     weights("finetune", "png.pth"), 2, ["png.pth", "not a PyTorch checkpoint (PNG image)"]),
    ("convert: a JPEG renamed .pth",
     lambda w: ["convert", at(w, "jpeg.pth"), at(w, "y.pth")], 2,
     ["jpeg.pth", "not a PyTorch checkpoint (JPEG image)"]),
    ("visualize: an empty checkpoint",
     lambda w: ["visualize", at(w, "empty.pth"), str(w["photo"]), "--out-dir", str(w["run"])], 2,
     ["empty.pth", "(empty file)"]),
    ("knn: a zip without data.pkl",
     weights("knn", "zip.pth"), 2, ["zip.pth", "zip archive without data.pkl"]),
    ("linprobe: a YAML file as checkpoint",
     weights("linprobe", "recipe.pth"), 2, ["recipe.pth", "YAML / text"]),
    ("resume: a PNG renamed .pth",
     lambda w: pretrain(w, f"train.resume={at(w, 'png.pth')}", "train.overwrite=true"), 2,
     ["png.pth", "PNG image"]),
    ("finetune: code in a pickle names it",
     weights("finetune", "evil.pth"), 2, ["evil.pth", "refused: the pickle would run code (builtins.print)"]),
    ("compare-loss: Excel CSV", compare("excel.csv"), 0, []),
    ("compare-loss: Excel CSV, two BOMs, header", compare("excel2.csv"), 0, []),
    ("compare-loss: partly numeric first row", compare("oops.csv"), 2, ["oops.csv:1", "not numbers"]),
    ("compare-loss: an empty CSV", compare("empty.csv"), 2, ["empty.csv", "empty"]),
    ("pretrain: two bad files side by side",
     lambda w: pretrain(w, *folder(w, "bad_pair"), "data.shuffle=false", "data.max_bad_fraction=0.5",
                        "train.epochs=1"), 0, ["1_0_text.jpg", "1_0_zero.jpg"]),
    ("knn: k over the train set",
     lambda w: evaluation("knn", w, f"eval.output_dir={at(w, 'knn_small')}"), 0,
     ["knn.k=20 capped at the 12", "top-5 n/a"]),
    ("knn: a killed writer's temp file",
     lambda w: evaluation("knn", w, "knn.k=4", f"eval.output_dir={at(w, 'knn_stale')}"), 0,
     ["removed 1 temp file(s) of killed writers", ".knn.json.tmp"]),
    ("pretrain: odd file names",
     lambda w: pretrain(w, *folder(w, "odd names"), "train.epochs=1", "train.batch_size=3"), 0, []),
    ("pretrain: output folder with spaces and unicode",
     lambda w: pretrain(w, "train.epochs=1", elsewhere(w, "o ü 猫 -x")), 0, []),
    ("pretrain: output name too long",
     lambda w: pretrain(w, elsewhere(w, "y" * 300)), 2, ["train.output_dir", "yyy"]),
    ("visualize: odd image names",
     lambda w: ["visualize", str(w["ckpt"]), *(str(w["odd"] / n) for n in ODD[:3]),
                "--out-dir", at(w, "vis odd")], 0, []),
    ("knn: output folder with a leading dash",
     lambda w: evaluation("knn", w, "knn.k=4", f"eval.output_dir={at(w, '-knn')}"), 0, []),
    ("knn: data.root is a file",
     lambda w: evaluation("knn", w, f"data.root={w['a_file']}"), 2, ["a_file.txt"]),
    ("finetune: pretrained path with spaces, missing",
     lambda w: evaluation("finetune", w, "model.pretrained=/n o/ü.pth"), 2, ["/n o/ü.pth"]),
    ("convert: output name with spaces and unicode",
     lambda w: ["convert", str(w["ckpt"]), at(w, "timm ü.safetensors")], 0, []),
    # the shard's size differs from the manifest's: refused when opened (issue 18 item 11)
    ("shards: a truncated tar", shards("trunc"), 2, ["shard-000000.tar", "manifest lists", "--verify"]),
    ("shards: a shard missing", shards("missing"), 2, ["shard-000000.tar", "not found"]),
    ("shards: manifest cut mid-JSON", shards("badjson"), 2, ["manifest.json", "not a maskfeat shard"]),
    ("shards: no manifest", shards("nomanifest"), 2, ["manifest.json", "not found"]),
    ("shards: manifest a PNG", shards("notjson"), 2, ["manifest.json"]),
    ("prepare: --root missing", prepare("/no/such/dir", "sh_x"), 2, ["/no/such/dir"]),
    ("prepare: --out is a file",
     lambda w: ["prepare", "--input", "folder", "--root", str(w["odd"]), "--out", str(w["a_file"]),
                "--procs", "1", "--no-progress"], 2, ["a_file.txt"]),
    ("prepare: odd file names", lambda w: prepare(str(w["odd"]), "sh odd ü")(w), 0, []),
]


# -- issue 18, items 1-8 and 11 (prepare, shards, convert): built on first use, under the world's root ------

def _trust_world(w):
    """Folders and files of the issue-18 prepare cases (built once, on first use)."""
    if "imgs" in w:
        return w
    from shard_helpers import make_shards, write_folder

    root = w["root"]
    w["imgs"] = write_folder(root / "imgs", per_class=4, size=(64, 64))
    shutil.copy(w["imgs"] / "a" / "001.jpg", w["imgs"] / "a" / os.fsdecode(b"caf\xe9_latin1.jpg"))
    w["loop"] = write_folder(root / "loop", per_class=8, classes=("a",), size=(64, 64))
    os.symlink("x2.jpg", w["loop"] / "x1.jpg")
    os.symlink("x1.jpg", w["loop"] / "x2.jpg")
    make_shards(w["imgs"], root / "shards_a", shard_samples=8)
    other = write_folder(root / "imgs_b", per_class=4, size=(72, 72), seed=1)
    make_shards(other, root / "shards_b", shard_samples=8)
    shutil.copytree(root / "shards_a", root / "replaced")
    shutil.copy(root / "shards_b" / "shard-000000.tar", root / "replaced" / "shard-000000.tar")
    cut = root / "cut.safetensors"
    cut.write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"w\": {\"dtype\"")
    w["cut"] = cut
    return w


def prep(w, *extra, root="imgs", out="sh"):
    _trust_world(w)
    out = out if out.startswith(("/", "-")) else str(w["root"] / out)
    return ["prepare", "--input", "folder", "--root", str(w[root]), "--out", out, "--procs", "1",
            "--no-progress", *extra]


def side_run(w, name, *extra):
    """A tiny pre-training into its own folder (not the world's run folder)."""
    _trust_world(w)
    return ["pretrain", *tiny_pretrain_overrides(w["root"] / name, **{"train.epochs": 1,
                                                                      "data.samples_per_epoch": 8}), *extra]


CASES += [
    ("prepare: non-UTF-8 file name", lambda w: prep(w, out="sh_nonutf"), 0, []),
    ("prepare: symlink loop", lambda w: prep(w, root="loop", out="sh_loop"), 0,
     ["x1.jpg: skipped", "x2.jpg"]),
    ("pretrain: symlink loop", lambda w: side_run(w, "loop_run", "data.source=folder",
                                                  f"data.root={w['loop']}"), 0, ["x1.jpg: skipped"]),
    ("prepare: --out inside --root", lambda w: prep(w, out=str(w["root"] / "imgs" / "shards")), 2,
     ["--out", "inside --root"]),
    ("prepare: the same, spelled differently", lambda w: prep(w, "--shard-samples", "8",
                                                             out=str(w["root"] / "shards_a") + "/"), 0, []),
    ("prepare: other settings into a prepare", lambda w: prep(w, "--shard-samples", "3", out="shards_a"), 2,
     ["other inputs or settings"]),
    ("prepare: --prefix with a folder", lambda w: prep(w, "--prefix", "train/shard"), 2, ["--prefix"]),
    ("prepare: --prefix escaping --out", lambda w: prep(w, "--prefix", "../escaped"), 2, ["--prefix"]),
    ("prepare: --prefix hidden", lambda w: prep(w, "--prefix", ".hidden"), 2, ["--prefix"]),
    ("prepare: --shard-mb nan", lambda w: prep(w, "--shard-mb", "nan"), 2, ["--shard-mb", "nan"]),
    ("prepare: --shard-mb inf", lambda w: prep(w, "--shard-mb", "inf"), 2, ["--shard-mb", "inf"]),
    ("prepare: --shard-samples<0", lambda w: prep(w, "--shard-samples", "-1"), 2, ["--shard-samples"]),
    ("prepare: no --out", lambda w: ["prepare", "--input", "folder", "--root",
                                     str(_trust_world(w)["imgs"])], 2, ["--out", "required"]),
    ("prepare --verify: replaced shard", lambda w: ["prepare", "--verify",
                                                    str(_trust_world(w)["root"] / "replaced")], 2,
     ["--verify", "shard-000000.tar"]),
    ("prepare --verify: no manifest", lambda w: ["prepare", "--verify", str(_trust_world(w)["imgs"])], 2,
     ["manifest"]),
    ("pretrain: replaced shard", lambda w: side_run(w, "replaced_run", "data.source=shards",
                                                    f"data.root={w['root'] / 'replaced'}"), 2,
     ["shard-000000.tar", "manifest"]),
    ("convert: truncated .safetensors", lambda w: ["convert", str(_trust_world(w)["cut"]),
                                                   str(w["root"] / "cut_out.safetensors")], 2,
     ["cut.safetensors"]),
    ("visualize: truncated .safetensors", lambda w: ["visualize", str(_trust_world(w)["cut"]),
                                                     str(w["photo"]), "--out-dir", str(w["root"])], 2,
     ["cut.safetensors"]),
    ("finetune: truncated .safetensors", lambda w: evaluation("finetune", _trust_world(w),
                                                              f"model.pretrained={w['cut']}"), 2,
     ["cut.safetensors"]),
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
    print(f"sweep: {len(CASES)} cases across pretrain, finetune, linprobe, knn, visualize, convert, compare-loss; "
          f"{len(tracebacks)} tracebacks, {len(changed)} changed the run folder")
    assert len(CASES) >= 90
    assert not tracebacks, tracebacks
    assert not changed, changed
    assert not wrong, "\n".join(wrong)
