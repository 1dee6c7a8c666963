"""Issue 18's prepare, shards and convert rows of the sweep (items 1-8 and 11; tests/test_sweep.py has
the rest): each ends with exit 0 or exit 2 with one stderr line naming the flag or file, never a
traceback, and the finished run folder of the world is byte-identical afterwards."""
import os
import shutil

import pytest

from helpers import tiny_pretrain_overrides
from helpers.sweep import build_world, evaluation, run_sweep


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_run):
    return build_world(tmp_path_factory.mktemp("sweep"), tiny_run)


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


CASES = [
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


def test_every_bad_prepare_input_is_one_line_or_skipped_and_the_run_folder_is_untouched(world, capsys):
    assert len(CASES) >= 19
    run_sweep(world, CASES, capsys)
