"""The public layouts as they ship (issue 22): ImageNet (mmpretrain), ImageFolder, Kinetics (official,
mmaction2, SlowFast CSV), each job on a tiny fake, with the recipe's defaults and data.root only where
a recipe exists for the layout (docs/video.md, docs/pretraining.md give the other keys)."""
import warnings

import numpy as np
import pytest
from PIL import Image

from maskfeat.cli import main
from maskfeat.config import builtin_config
from maskfeat.data.labelled_splits import load_splits
from maskfeat.data.prepare import PrepareSpec, prepare
from maskfeat.data.sources import listing
from maskfeat.errors import ConfigError, DataWarning, UserError, plain_warnings
from maskfeat.tasks import build_config

av = pytest.importorskip("av")
from test_video_data import write_video  # noqa: E402

IN1K = {job: str(builtin_config(f"{job}/{name}")) for job, name in (
    ("pretrain", "maskfeat_vit-base-p16_in1k"), ("finetune", "vit-base-p16_in1k"),
    ("linprobe", "vit-base-p16_in1k"), ("knn", "vit-base-p16_in1k"))}
K400 = {"pretrain": str(builtin_config("pretrain/maskfeat_mvitv2-s-16x4_k400")),
        "finetune": str(builtin_config("finetune/mvitv2-s-16x4_k400"))}
WNIDS = ("n01440764", "n01443537")


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """mmpretrain's layout: train/<wnid>/<wnid>_N.JPEG (2 x 3), flat val/ (4), meta/{train,val}.txt."""
    root = tmp_path_factory.mktemp("imagenet")
    train, val = [], []
    for c, wnid in enumerate(WNIDS):
        for n in range(3):
            _jpeg(root / "train" / wnid / f"{wnid}_{n}.JPEG", 10 * c + n)
            train.append(f"{wnid}/{wnid}_{n}.JPEG {c}")
    for n in range(4):
        _jpeg(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG", 100 + n)
        val.append(f"ILSVRC2012_val_{n:08d}.JPEG {n % 2}")
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "val.txt").write_text("\n".join(val) + "\n")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """ImageFolder: train/<class>/ (3 x 8 = 24 images), val/<class>/ (3 x 3 = 9): the issue's counts."""
    root = tmp_path_factory.mktemp("imagefolder")
    for c, name in enumerate(("cat", "dog", "fox")):
        for n in range(8):
            _jpeg(root / "train" / name / f"{n}.jpg", 10 * c + n)
        for n in range(3):
            _jpeg(root / "val" / name / f"{n}.jpg", 200 + 10 * c + n)
    return root


def _labelled_counts(cfg):
    train, val = load_splits(cfg["data"])
    return len(train), len(val), len(set(train.labels.tolist()))


# -- ImageNet, mmpretrain's layout: data.root is the only key ---------------------------------------

@pytest.mark.parametrize("job", ["finetune", "linprobe", "knn"])
def test_imagenet_labelled_jobs_with_the_recipe_and_root_only(imagenet, job):
    cfg = build_config(job, IN1K[job], [f"data.root={imagenet}"])
    assert _labelled_counts(cfg) == (6, 4, 2)


def test_imagenet_pretrain_readme_command(imagenet, tmp_path):
    cfg = build_config("pretrain", IN1K["pretrain"], [f"data.root={imagenet}"])
    got = listing(cfg["data"], "image")
    assert len(got) == 6 and sorted(set(got.labels.tolist())) == [0, 1]
    rc = main(["pretrain", "--config", IN1K["pretrain"], f"data.root={imagenet}", "model.arch=vit-pico",
               "model.img_size=32", "mask.min_num_patches=1", "train.batch_size=3", "train.max_steps=2",
               "data.num_workers=0", "train.progress=false", "train.amp=none", "train.compile=false",
               f"train.output_dir={tmp_path / 'run'}"])
    assert rc == 0 and (tmp_path / "run" / "last.pth").is_file()


def test_imagenet_prepare_with_split(imagenet, tmp_path):
    m = prepare(PrepareSpec("list", str(imagenet), str(tmp_path / "s"), ann_file="meta/train.txt",
                            progress=False, split="train"))
    assert m.total == 6 and m.label_counts == {0: 3, 1: 3}
    with pytest.raises(UserError, match=r"--ann-file: .*names 6\+ missing files"):      # before: no prefix
        prepare(PrepareSpec("list", str(imagenet), str(tmp_path / "t"), ann_file="meta/train.txt",
                            progress=False))


# -- ImageFolder -------------------------------------------------------------------------------------

def test_imagefolder_pretrain_reads_train_only_and_says_so(image_folder):
    cfg = build_config("pretrain", None, ["data.source=folder", f"data.root={image_folder}"])
    with pytest.warns(DataWarning, match=r"data.train_split: .* holds the split folders train, val; "
                                         r"pre-training reads train/ only"):
        got = listing(cfg["data"], "image")
    assert len(got) == 24                                       # before: 33 (train and val images)
    assert all("/train/" in p for p in got.all_paths())
    explicit = build_config("pretrain", None, ["data.source=folder", f"data.root={image_folder}/train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(listing(explicit["data"], "image")) == 24


@pytest.mark.parametrize("job", ["finetune", "linprobe", "knn"])
def test_imagefolder_labelled_jobs(image_folder, job):
    cfg = build_config(job, None, ["data.source=folder", f"data.root={image_folder}"])
    assert _labelled_counts(cfg) == (24, 9, 3)


def test_imagefolder_prepare_needs_a_split(image_folder, tmp_path):
    with pytest.raises(UserError,
                       match=r"^--split: .* holds the split folders train, val; give --split train"):
        prepare(PrepareSpec("folder", str(image_folder), str(tmp_path / "x"), progress=False))
    assert not (tmp_path / "x").exists()
    m = prepare(PrepareSpec("folder", str(image_folder), str(tmp_path / "s"), progress=False, split="train"))
    assert m.total == 24 and m.label_counts == {0: 8, 1: 8, 2: 8} and m.classes == ["cat", "dog", "fox"]


# -- Kinetics: official layout (the recipes' default), mmaction2, SlowFast CSV -------------------------

K_LABELS = ("abseiling", "air drumming")
TINY_VIDEO = ["model.arch=mvitv2-pico", "model.img_size=32", "model.num_frames=4", "data.sampling_rate=1",
              "data.decode_short_side=0", "data.num_workers=0"]
TINY_MASK = ["mask.unit_size=[2,16,16]", "mask.min_num_patches=1"]


def _videos(folder, names, seed=0):
    for n, rel in enumerate(names):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(folder / rel, 8, h=32, w=32, seed=seed + n)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """Kinetics' own layout: {train,val}/<label>/<id>_<start>_<end>.mp4 (2 x 2, 2 x 1), annotations/*.csv;
    the val CSV lists one video that was never downloaded."""
    root = tmp_path_factory.mktemp("k400")
    (root / "annotations").mkdir()
    for split, per in (("train", 2), ("val", 1)):
        rows = ["label,youtube_id,time_start,time_end,split"]
        for c, label in enumerate(K_LABELS):
            for n in range(per):
                vid = f"{split[0]}{c}{n}abcdefg"
                rows.append(f"{label},{vid},{10 * n},{10 * n + 10},{split}")
                _videos(root / split, [f"{label}/{vid}_{10 * n:06d}_{10 * n + 10:06d}.mp4"], seed=c)
        if split == "val":
            rows.append("abseiling,gone0000000,0,10,val")
        (root / "annotations" / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def mmaction(tmp_path_factory):
    """mmaction2's layout: videos_{train,val}/, kinetics400_{train,val}_list_videos.txt relative to each."""
    root = tmp_path_factory.mktemp("mmaction")
    for split, per in (("train", 2), ("val", 1)):
        names = [f"{label.replace(' ', '_')}/{split}{n}.mp4" for label in K_LABELS for n in range(per)]
        _videos(root / f"videos_{split}", names)
        lines = [f"{name} {i // per}" for i, name in enumerate(names)]
        (root / f"kinetics400_{split}_list_videos.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def slowfast(tmp_path_factory):
    """SlowFast's CSVs: train.csv / val.csv of 'path label' lines, paths relative to the root."""
    root = tmp_path_factory.mktemp("slowfast")
    for split, per in (("train", 2), ("val", 1)):
        names = [f"clips/{split}_{c}_{n}.mp4" for c in range(2) for n in range(per)]
        _videos(root, names)
        (root / f"{split}.csv").write_text("".join(f"{name} {i // per}\n" for i, name in enumerate(names)))
    return root


MMACTION_PRETRAIN = ["data.train_split=videos_train", "data.ann_file=kinetics400_train_list_videos.txt"]
MMACTION_FINETUNE = ["data.train_split=videos_train", "data.val_split=videos_val",
                     "data.train_ann_file=kinetics400_train_list_videos.txt",
                     "data.val_ann_file=kinetics400_val_list_videos.txt"]
SLOWFAST_PRETRAIN = ["data.train_split=", "data.ann_file=train.csv"]
SLOWFAST_FINETUNE = ["data.train_split=", "data.val_split=", "data.train_ann_file=train.csv",
                     "data.val_ann_file=val.csv"]
LAYOUTS = {"kinetics": ([], []), "mmaction": (MMACTION_PRETRAIN, MMACTION_FINETUNE),
           "slowfast": (SLOWFAST_PRETRAIN, SLOWFAST_FINETUNE)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_kinetics_pretrain(layout, request):
    from maskfeat.data.video_loader import build_video_pretrain_dataset, video_files

    root = request.getfixturevalue(layout)
    cfg = build_config("pretrain", K400["pretrain"], [f"data.root={root}", *TINY_VIDEO, *TINY_MASK,
                                                         *LAYOUTS[layout][0]])
    paths, labels, _ = video_files(cfg["data"])
    assert len(paths) == 4 and len(set(labels)) == 2
    assert len(build_video_pretrain_dataset(cfg)) == 4


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_kinetics_finetune(layout, request):
    from maskfeat.data.video_loader import build_video_classify_datasets

    root = request.getfixturevalue(layout)
    cfg = build_config("finetune", K400["finetune"], [f"data.root={root}", *TINY_VIDEO, *LAYOUTS[layout][1]])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train, test, classes = build_video_classify_datasets(cfg)
    assert len(train.labels) == 4 and len(test.labels) == 2 and len(classes) == 2
    assert sorted(test.labels) == [0, 1]
    missing = [str(w.message) for w in seen if issubclass(w.category, DataWarning)]
    assert len(missing) == (layout == "kinetics")               # the val CSV's undownloaded video
    if missing:
        assert missing[0].startswith("data.val_ann_file: 1 of the 3 videos listed in ")
        assert (f"e.g. {root}/val/abseiling/gone0000000_000000_000010 or "
                f"{root}/val/gone0000000_000000_000010.*" in missing[0])      # the folders tried


def test_kinetics_finetune_command_runs_on_the_official_layout(kinetics, tmp_path):
    rc = main(["finetune", "--config", K400["finetune"], f"data.root={kinetics}", *TINY_VIDEO,
               "train.batch_size=2", "train.epochs=1", "data.test_temporal_views=1", "train.amp=none",
               "train.progress=false", "model.pretrained=", f"train.output_dir={tmp_path / 'ft'}"])
    assert rc == 0 and (tmp_path / "ft" / "last.pth").is_file()


@pytest.mark.parametrize("layout,split,ann", [
    ("kinetics", "train", "annotations/train.csv"),
    ("mmaction", "videos_train", "kinetics400_train_list_videos.txt"),
    ("slowfast", "", "train.csv")])
def test_kinetics_prepare(layout, split, ann, request, tmp_path):
    root = request.getfixturevalue(layout)
    m = prepare(PrepareSpec("video", str(root), str(tmp_path / "s"), ann_file=ann, split=split,
                            progress=False))
    assert m.total == 4 and m.label_counts == {0: 2, 1: 2}


# -- the messages of the "Why" that name a key ----------------------------------------------

def test_forgotten_val_ann_file_is_named(slowfast):
    cfg = build_config("finetune", K400["finetune"], [f"data.root={slowfast}", *TINY_VIDEO,
                                                       *SLOWFAST_FINETUNE,
                                                       "data.val_ann_file=annotations/val.csv"])
    from maskfeat.data.video_loader import build_video_classify_datasets
    with pytest.raises(UserError, match=rf"^data.val_ann_file: annotation file not found: "
                                        rf"{slowfast}/annotations/val.csv$"):
        build_video_classify_datasets(cfg)


def test_val_videos_missing_name_the_val_key_and_the_paths_tried(kinetics, mmaction):
    from maskfeat.data.video_loader import build_video_classify_datasets
    cfg = build_config("finetune", K400["finetune"], [f"data.root={kinetics}", *TINY_VIDEO,
                                                       "data.val_split=train"])
    with pytest.raises(UserError, match=rf"^data.val_ann_file: none of the 3 videos listed in "
                                        rf"{kinetics}/annotations/val.csv exist under {kinetics}/train, e.g. "
                                        rf"{kinetics}/train/abseiling/v00abcdefg_000000_000010.*"):
        build_video_classify_datasets(cfg)
    cfg = build_config("finetune", K400["finetune"], [f"data.root={mmaction}", *TINY_VIDEO,
                                                       *MMACTION_FINETUNE, "data.val_split=videos_train"])
    with pytest.raises(UserError, match=rf"^data.val_ann_file: none of the 2 videos listed .* e.g. "
                                        rf"{mmaction}/videos_train/abseiling/val0.mp4$"):
        build_video_classify_datasets(cfg)


def test_video_finetune_ann_file_was_renamed():
    with pytest.raises(ConfigError, match=r"'data.ann_file' was renamed 'data.train_ann_file'"):
        build_config("finetune", K400["finetune"], ["data.ann_file=x.csv"])


def test_data_warnings_are_one_plain_line():
    plain_warnings()
    line = warnings.formatwarning(DataWarning("data.val_ann_file: 1 of the 3 ..."), DataWarning, "x.py", 7)
    assert line == "warning: data.val_ann_file: 1 of the 3 ...\n"


def test_val_labels_the_train_split_lacks_are_counted_and_named(slowfast, imagenet, tmp_path):
    from maskfeat.data.video_loader import build_video_classify_datasets
    (tmp_path / "val.csv").write_text(f"{slowfast}/clips/val_0_0.mp4 0\n{slowfast}/clips/val_1_0.mp4 5\n")
    cfg = build_config("finetune", K400["finetune"], [f"data.root={slowfast}", *TINY_VIDEO,
                                                       *SLOWFAST_FINETUNE,
                                                       f"data.val_ann_file={tmp_path / 'val.csv'}"])
    with pytest.warns(DataWarning, match=r"^data.val_ann_file: 1 val samples have labels the train split "
                                         r"lacks \(e.g. 5; 1 such labels\)"):
        _, test, classes = build_video_classify_datasets(cfg)
    assert test.labels == [0, 5] and len(classes) == 6              # counted: the classifier has class 5
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000000.JPEG 0\nILSVRC2012_val_00000001.JPEG 7\n")
    cfg = build_config("finetune", IN1K["finetune"], [f"data.root={imagenet}",
                                                      f"data.val_ann_file={tmp_path / 'val.txt'}"])
    with pytest.warns(DataWarning,
                      match=r"^data.val_ann_file: 1 val samples have labels the train split lacks"):
        train, val = load_splits(cfg["data"])
    assert max(train.num_classes, val.num_classes) == 8
