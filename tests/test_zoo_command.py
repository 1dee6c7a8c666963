"""The model zoo's command as typed (run_maskfeat.py with mmpretrain's MaskFeat config names) and
mmpretrain's ImageNet layout: images under data_root/train/<wnid>/, meta/train.txt relative to train/,
a flat val/ with meta/val.txt relative to val/."""
import argparse
import json
import subprocess

import pytest
import yaml
from PIL import Image

from helpers import PYTHON, REPO, cli_env, log_steps, maskfeat
from maskfeat.cli import main
from maskfeat.commands.run import ZOO_CONFIGS, add_arguments, pick_recipe, translate
from maskfeat.data.loader import pretrain_files
from maskfeat.errors import ConfigError, UserError
from maskfeat.tasks import resolve_task

ZOO_CONFIG = "../configs/maskfeat/maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py"
FINETUNE_CONFIG = "configs/maskfeat/benchmarks/vit-base-p16_8xb256-coslr-100e_in1k.py"
WNIDS = ("n01440764", "n01443537", "n01484850")
PER_CLASS = 3                                  # train images per wnid: 9 in all
SMALL = ["model.arch=vit-pico", "model.img_size=64", "train.batch_size=4", "data.num_workers=0",
         "train.log_interval=1", "train.progress=false"]
TINY = [*SMALL, "mask.min_num_patches=2"]           # pre-training


def make_imagenet(root):
    """A tiny ImageNet in mmpretrain's layout; (train image paths, val image paths) relative to root."""
    train, val = [], []
    for label, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(PER_CLASS):
            train.append((f"{wnid}/{wnid}_{k}.JPEG", label))
            val.append((f"ILSVRC2012_val_{len(val) + 1:08d}.JPEG", label))
    (root / "val").mkdir()
    (root / "meta").mkdir()
    for split, items in (("train", train), ("val", val)):
        for i, (rel, _) in enumerate(items):
            colour = (40 * i % 256, 255 - 30 * i % 256, 90)
            Image.new("RGB", (64 + 8 * (i % 3), 64), colour).save(root / split / rel, quality=90)
        (root / "meta" / f"{split}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in items))
    return [f"train/{rel}" for rel, _ in train], [f"val/{rel}" for rel, _ in val]


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet(root)
    return root


@pytest.fixture
def imagenet_names(tmp_path):
    root = tmp_path / "imagenet"
    return root, *make_imagenet(root)


def samples_per_epoch(stderr: str) -> int:
    line = next(line for line in stderr.splitlines() if "samples/epoch" in line)
    return int(line.split(" samples/epoch")[0].rsplit(" ", 1)[1])


@pytest.mark.parametrize("launcher", [pytest.param("pytorch", marks=pytest.mark.slow), "none"])
def test_zoo_command_as_typed_trains(imagenet, tmp_path, launcher):
    """(a) The model zoo's command on mmpretrain's layout: as typed (torchrun with one CPU process,
    15-40 s on a shared 2-core CPU), and with --launcher none (one process, quicker)."""
    out = tmp_path / "work"
    launch = ["--launcher", "pytorch", "--nproc-per-node", "1"] if launcher == "pytorch" else []
    cmd = [PYTHON, "run_maskfeat.py", "--config", ZOO_CONFIG, *launch, "--amp", "--cfg-options",
           f"train_dataloader.dataset.data_root={imagenet}", "train.max_steps=2", *TINY,
           f"train.output_dir={out}"]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("run_maskfeat: mmpretrain config maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py -> "
            "pretrain recipe configs/pretrain/maskfeat_vit-base-p16_in1k.yaml") in proc.stderr.splitlines()
    assert proc.stderr.count("run_maskfeat: mmpretrain config") == 1       # not again by torchrun's process
    assert samples_per_epoch(proc.stderr) == len(WNIDS) * PER_CLASS
    assert log_steps(out / "log.jsonl") == [1, 2]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["root"] == str(imagenet) and cfg["data"]["train_split"] == "train"
    assert cfg["train"]["amp"] == "fp16" and cfg["model"]["arch"] == "vit-pico"


def test_our_imagenet_recipe_reads_the_layout(imagenet, tmp_path):
    """(b) Our ImageNet recipe with data.root at the folder trains on exactly its train images."""
    out = tmp_path / "run"
    proc = maskfeat("pretrain", "--config", "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml",
                    f"data.root={imagenet}", "train.max_steps=2", "train.device=cpu", *TINY,
                    f"train.output_dir={out}", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert samples_per_epoch(proc.stderr) == 9 and log_steps(out / "log.jsonl") == [1, 2]


def test_list_and_folder_sources_join_the_train_split(imagenet_names):
    imagenet, train, _ = imagenet_names
    data = {"source": "list", "root": str(imagenet), "ann_file": "meta/train.txt", "train_split": "train/"}
    files = pretrain_files(data)
    assert [files.path(i) for i in range(len(files))] == [str(imagenet / p) for p in train]
    folder = pretrain_files(dict(data, source="folder", train_split="train"))
    assert sorted(folder.path(i) for i in range(len(folder))) == sorted(str(imagenet / p) for p in train)
    tried = r"names 9\+ missing files, e.g. .*imagenet/n01440764/n01440764_0.JPEG"   # the joined path tried
    with pytest.raises(UserError, match=tried):
        pretrain_files(dict(data, train_split=""))


def parse(*argv) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_finetune_alias_resolves_to_the_finetune_job(imagenet, capsys):
    """(c) mmpretrain's fine-tune benchmark config -> our finetune recipe; its val aliases land."""
    args = parse("--config", FINETUNE_CONFIG, "--device", "cpu", "--cfg-options",
                 f"train_dataloader.dataset.data_root={imagenet}",
                 "val_dataloader.dataset.data_prefix.img_path=val/",
                 "val_dataloader.dataset.ann_file=meta/val.txt",
                 "train_dataloader.dataset.ann_file=meta/train.txt")
    pick_recipe(args)
    assert capsys.readouterr().err.strip() == (
        "run_maskfeat: mmpretrain config vit-base-p16_8xb256-coslr-100e_in1k.py -> finetune recipe "
        "configs/finetune/vit-base-p16_in1k.yaml")
    task, cfg = resolve_task(args.job, args.config, translate(args, 1))
    assert (task.job, args.job) == ("finetune", "finetune")
    data = cfg["data"]
    assert (data["root"], data["val_split"], data["train_split"]) == (str(imagenet), "val/", "train")
    assert (data["train_ann_file"], data["val_ann_file"]) == ("meta/train.txt", "meta/val.txt")
    assert cfg["train"]["device"] == "cpu" and cfg["model"]["num_classes"] == 1000
    for name in ("vit-base-p16_8xb256-coslr-100e_in1k", "benchmarks/vit-base-p16_8xb256-coslr-100e_in1k.py"):
        assert ZOO_CONFIGS[name.split("/")[-1].removesuffix(".py")][0] == "finetune"
        a = parse("--config", name)
        pick_recipe(a)
        assert a.job == "finetune" and a.config.endswith("finetune/vit-base-p16_in1k.yaml")


def test_finetune_alias_one_epoch_on_the_layout(imagenet, tmp_path):
    """(c) ... and trains one epoch on the layout, its flat val/ evaluated through meta/val.txt."""
    out = tmp_path / "ft"
    assert main(["run", "--config", FINETUNE_CONFIG, "--device", "cpu", "--cfg-options",
                 f"train_dataloader.dataset.data_root={imagenet}", "model.pretrained=", "model.num_classes=3",
                 "train.epochs=1", "aug.auto_augment=", *SMALL, f"train.output_dir={out}"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["val_samples"] for r in records if "val_samples" in r] == [9]
    assert max(r.get("step", 0) for r in records) == 2                     # 9 images // batch 4


def test_unknown_mmpretrain_config_is_one_line(capsys):
    """(d) An mmpretrain config we do not cover: exit 2, one line listing the names we cover."""
    assert main(["run", "--config", "configs/mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py" in err
    assert all(f"{name}.py" in err for name in ZOO_CONFIGS)


def test_data_prefix_option_sets_the_train_split(imagenet, tmp_path):
    """(e) data_prefix.img_path=train/ through --cfg-options (our skimage default recipe otherwise)."""
    out = tmp_path / "e"
    assert main(["run", "--config", "configs/pretrain/maskfeat_vit-mini-p16_skimage.yaml", "--cfg-options",
                 f"train_dataloader.dataset.data_root={imagenet}",
                 "train_dataloader.dataset.data_prefix.img_path=train/", "data.source=list",
                 "train.max_steps=1", "train.device=cpu", *TINY, f"train.output_dir={out}"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["train_split"] == "train/" and log_steps(out / "log.jsonl") == [1]
    bare = translate(parse("--config", "configs/pretrain/maskfeat_vit-mini-p16_skimage.yaml", "--cfg-options",
                           "train_dataloader.dataset.data_prefix=train"), 1)
    assert bare == ["data.train_split=train"]


def test_absolute_train_split_is_refused():
    """An absolute data.train_split would leave data.root out silently: a one-line config error."""
    refused = r"^data.train_split: '/data/train' is not valid; expected a path relative to data.root"
    with pytest.raises(ConfigError, match=refused):
        resolve_task("pretrain", None, ["data.train_split=/data/train"])
    assert resolve_task("pretrain", None, ["data.train_split=train/"])[1]["data"]["train_split"] == "train/"
