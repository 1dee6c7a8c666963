"""The lean file index (issue 13): what the datasets hold, the folder scan's order against the
pathlib scan it replaces, symbolic links, the list-file parser against the line rules, and the
memory bench on a small list."""
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import load_bench
from maskfeat.config import resolve_config
from maskfeat.data import FileIndex, build_pretrain_dataset, read_list_file, scan_folder
from maskfeat.data.labelled_splits import load_split
from maskfeat.defaults import KNN, PRETRAIN
from maskfeat.errors import UserError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")


def pathlib_scan(root: Path) -> tuple[list[str], list[int], list[str]]:
    """The scan as it was before the index (sorted iterdir + sorted rglob), kept as the reference."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
            paths.append(str(p))
            labels.append(-1)
    for label, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
                paths.append(str(p))
                labels.append(label)
    return paths, labels, classes


def touch(root: Path, rel: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")


ODD_TREE = [
    "top b.jpg", "Top.PNG", "top.txt", ".top_hidden.jpg", "ä.jpeg",
    "b/x.png", "b/sub/y.jpg", "b/sub.jpg", "b/sub-1.jpg", "b/sub0/z.jpg", "b/sub/deeper/w.gif",
    "b/.hidden.jpg", "b/.hid/q.jpg", "b/sub/deeper/.jpg", "b/noext", "b/x.jpg.", "b/UPPER.JPG",
    "b/mixed.JpEg", "b/a b c.tiff",
    "a/1.jpg", "a/10.jpg", "a/2.jpg", "a/Z.jpg", "a/z.jpg", "a/é/1.png", "a/e/1.png", "a/日本/猫.webp",
    "a~/1.jpg", "a-b/1.bmp", "empty/readme.txt", ".git/x.jpg", "c/d/e/f/g/h.jpg", "c/d.e/f.jpg", "c/d/e.jpg",
]


def test_folder_scan_order_is_the_pathlib_scans(tmp_path):
    root = tmp_path / "tree"
    for rel in ODD_TREE:
        touch(root, rel)
    (root / "b" / "sub" / os.fsdecode(b"bad\xff name.jpg")).write_bytes(b"x")   # not UTF-8
    (root / "emptydir").mkdir()
    want_paths, want_labels, want_classes = pathlib_scan(root)
    files = scan_folder(root)
    assert isinstance(files, FileIndex) and len(files) == len(want_paths) == 29
    assert [files.path(i) for i in range(len(files))] == want_paths
    assert files.labels.tolist() == want_labels and files.classes == want_classes
    assert files.classes == ["a", "a-b", "a~", "b", "c", "empty", "emptydir"]
    assert files.notes == []
    assert files.path(0) == str(root / ".top_hidden.jpg") and files.path(1) == str(root / "Top.PNG")
    rng = random.Random(0)                                # a larger random tree, same order
    big = tmp_path / "big"
    for _ in range(400):
        depth = rng.randint(1, 4)
        parts = [rng.choice(["a", "b", "B", "a.b", "a b", "ab", "_", "0"]) + rng.choice(["", "x", ".d"])
                 for _ in range(depth)]
        rel = ("/".join(parts) + "/" + rng.choice(["f", "F", "g.h", "f-1", "f 1"])
               + rng.choice([".jpg", ".PNG", ".txt"]))
        try:
            touch(big, rel)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):    # a name taken by a file / folder
            pass
    want_paths, want_labels, want_classes = pathlib_scan(big)
    files = scan_folder(big)
    assert [files.path(i) for i in range(len(files))] == want_paths and len(want_paths) > 100
    assert files.labels.tolist() == want_labels and files.classes == want_classes


def test_folder_scan_follows_links_out_of_the_tree_once_and_never_loops(tmp_path):
    root, outside = tmp_path / "train", tmp_path / "elsewhere"
    for rel in ("a/1.jpg", "a/sub/2.jpg", "b/3.jpg", "e/6.jpg"):
        touch(root, rel)
    for rel in ("4.jpg", "deep/5.jpg"):
        touch(outside, rel)
    os.symlink("..", root / "a" / "up")                  # a loop back up to the root
    os.symlink(".", root / "loop")                       # a top-level link to the root itself: not a class
    os.symlink(tmp_path, root / "grand")                 # above the tree: would reach train/ and elsewhere/
    os.symlink("../b", root / "a" / "to_b")              # into the tree: b's files are scanned as b's
    os.symlink(outside, root / "c")                      # a class folder kept elsewhere: followed
    os.symlink(outside, root / "d")                      # the same folder again: scanned already
    os.symlink(outside / "deep", root / "e" / "deep")    # inside a folder scanned already
    os.symlink("../1.jpg", root / "a" / "sub" / "one.jpg")   # a link to a file is a file
    files = scan_folder(root)
    rel = [os.path.relpath(files.path(i), root) for i in range(len(files))]
    assert rel == ["a/1.jpg", "a/sub/2.jpg", "a/sub/one.jpg", "b/3.jpg", "c/4.jpg", "c/deep/5.jpg", "e/6.jpg"]
    assert files.classes == ["a", "b", "c", "e"] and files.labels.tolist() == [0, 0, 0, 1, 2, 2, 3]
    skipped = " ".join(files.notes)
    for link in ("a/up", "loop", "grand", "a/to_b", "d", "e/deep"):
        assert f"{root / link} -> " in skipped, link
    assert "c -> " not in skipped


def reference_list_parse(text: str) -> list[tuple[str, int]]:
    """The 'relative/path [label]' rules of the line-by-line parser the index replaces."""
    out = []
    for line in text.splitlines():
        parts = line.strip().rsplit(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out.append((parts[0], int(parts[1])))
        else:
            out.append((line.strip(), -1))
    return out


def test_list_file_parse_follows_the_line_rules(tmp_path):
    rng = random.Random(0)
    words = ["a.jpg", "dir/b c.png", "n01/x_1.JPEG", "ü.jpg", "7", "-3", "x", "12ab", "1-2", "0009", "-"]
    blanks = [" ", "  ", "\t", " \t "]
    lines = []
    for _ in range(3000):
        k = rng.randint(0, 3)
        body = rng.choice(blanks).join(rng.choice(words) for _ in range(k))
        lines.append(rng.choice(["", " ", "\t"]) + body + rng.choice(["", " ", "\t "]))
    text = "".join(line + rng.choice(["\n", "\r\n", "\n\n"]) for line in lines) + "last.jpg 5"
    (tmp_path / "list.txt").write_bytes(text.encode())
    want = reference_list_parse(text)
    (tmp_path / "a.jpg").write_bytes(b"x")
    import maskfeat.data.list_file as lf
    starts, ends, labels = lf.parse_list(text.encode())
    got = [(text.encode()[s:e].decode(), int(lab))
           for s, e, lab in zip(starts.tolist(), ends.tolist(), labels.tolist())]
    assert got == want and len(got) > 2000 and {lab for _, lab in got} >= {-1, -3, 7, 9, 5}
    lf._CHECKED = 0                                    # (files of the random lines do not exist)
    try:
        files = read_list_file(tmp_path, "list.txt")
    finally:
        lf._CHECKED = 1000
    assert [files.relative(i) for i in range(len(files))] == [p for p, _ in want]
    assert files.labels.tolist() == [lab for _, lab in want]
    assert files.path(len(files) - 1) == str(tmp_path / "last.jpg")


def test_list_file_errors_name_the_line(tmp_path):
    for i in range(3):
        touch(tmp_path / "train", f"{i}.jpg")
    (tmp_path / "ok.txt").write_text("0.jpg 0\n\n1.jpg 1\n2.jpg\n")
    with pytest.raises(UserError, match=r"ok.txt line 4 has no label"):
        read_list_file(tmp_path / "train", tmp_path / "ok.txt", key="data.train_ann_file",
                       require_labels=True)
    (tmp_path / "missing.txt").write_text("0.jpg 0\n\n  1.jpg 1\n9.jpg 1\n")
    with pytest.raises(UserError,
                       match=r"^data.ann_file: .*missing.txt names 1\+ missing files, "
                             r"e.g. .*9.jpg \(line 4\)"):
        read_list_file(tmp_path / "train", tmp_path / "missing.txt")
    (tmp_path / "huge.txt").write_text("0.jpg 0\n1.jpg 123456789012345678901234\n")
    with pytest.raises(UserError, match=r"huge.txt line 2: label 1234567890123456789012.* is too large"):
        read_list_file(tmp_path / "train", tmp_path / "huge.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(UserError, match="lists no images"):
        read_list_file(tmp_path / "train", tmp_path / "blank.txt")


def test_datasets_hold_a_file_index_not_a_list_of_paths(tmp_path):
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "cls" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(
                    tmp_path / "cls" / split / c / f"{i}.png")
    (tmp_path / "meta").mkdir()
    listing = "".join(f"{c}/{i}.png {k}\n" for k, c in enumerate(("cat", "dog")) for i in range(3))
    (tmp_path / "meta" / "train.txt").write_text(listing)
    pre = ["model.img_size=32", "mask.min_num_patches=1"]
    for extra in (["data.source=folder", f"data.root={tmp_path / 'cls' / 'train'}"],
                  ["data.source=list", f"data.root={tmp_path / 'cls' / 'train'}",
                   f"data.ann_file={tmp_path / 'meta' / 'train.txt'}"]):
        ds = build_pretrain_dataset(resolve_config(PRETRAIN, None, pre + extra))
        assert isinstance(ds.files, FileIndex) and len(ds.files) == 6 and not hasattr(ds, "paths")
        held = [v for v in vars(ds).values() if isinstance(v, (list, tuple, dict)) and len(v) >= 6]
        assert held == [], held                    # no per-sample Python objects
        assert ds.files.path(3) == str(tmp_path / "cls" / "train" / "dog" / "0.png")
        assert ds[(3, 0)]["images"].shape == (3, 32, 32)
    data = resolve_config(KNN, None, ["data.source=folder", f"data.root={tmp_path / 'cls'}"])["data"]
    split = load_split(data, "train")
    assert isinstance(split.files, FileIndex) and split.labels is split.files.labels
    assert not hasattr(split, "paths")
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    sub = split.subset(4, seed=0)
    assert [sub.describe(i) for i in range(4)] == [split.describe(int(i)) for i in sub.origin]
    assert sub.labels.tolist() == [split.labels[int(i)] for i in sub.origin]


def test_file_index_from_names_and_subset_keep_odd_names():
    names = ["a/b.jpg", os.fsdecode(b"x\xffy.png"), "ü ö.jpg", "", "/abs/c.jpg"]
    idx = FileIndex.from_names(names, [3, 1, 4, 1, 5], root="/r")
    assert len(idx) == 5 and [idx.relative(i) for i in range(5)] == names
    assert idx.path(0) == "/r/a/b.jpg" and idx.path(4) == "/abs/c.jpg" and idx.label(2) == 4
    for keep in ([4, 0, 2], [0, 2, 3, 4], []):
        sub = idx.subset(keep)
        assert [sub.relative(i) for i in range(len(sub))] == [names[k] for k in keep]
        assert sub.labels.tolist() == [[3, 1, 4, 1, 5][k] for k in keep]
    assert idx.nbytes == idx.blob.nbytes + 6 * 8 + 5 * 8


def test_index_memory_bench_runs_on_a_small_list(tmp_path, capsys):
    bench = load_bench("index_memory")
    assert bench.main(["--lines", "3000", "--per-worker", "64", "--workers", "2", "--batch", "32",
                       "--img-size", "32", "--settle", "0.2", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = (tmp_path / "meta" / "train.txt").read_text().splitlines()
    assert len(lines) == 3000 and lines[1] == "n00000001/../ILSVRC2012_val_00000001.JPEG 1"
    assert "list file: 3,000 lines; parse" in out and "(FileIndex)" in out
    assert "growth of the total PSS" in out and "64 samples / worker" in out and "first batch" in out
