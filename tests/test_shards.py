"""Shards: the epoch plan, `maskfeat prepare` (content, resume after SIGKILL), reading (pipe:, bad
samples)."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import PYTHON, cli_env
from maskfeat.config import ConfigError, resolve_config
from maskfeat.data import build_loader, build_pretrain_dataset, scan_folder
from maskfeat.data.shard_manifest import read_manifest
from maskfeat.data.shard_plan import (
    Layout,
    consumed_batches,
    epoch_order,
    samples_per_rank,
    worker_plan,
)
from maskfeat.defaults import PRETRAIN
from maskfeat.errors import UserError
from shard_helpers import make_shards, rewrite_member, tar_samples, write_folder


# -- the plan -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counts,world,workers,batch", [
    ([10, 10, 10, 10, 8], 2, 2, 4),      # 48 samples, 5 shards: nothing divides ranks x workers
    ([7, 3, 11], 3, 2, 2),               # 21 samples: 3 dropped to keep 3 ranks at 3 full batches each
    ([5], 2, 3, 1),                      # one shard for 6 readers
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_plan_gives_every_sample_once_across_ranks_and_workers(counts, world, workers, batch, shuffle):
    counts = np.array(counts)
    total = int(counts.sum())
    for drop_last in (True, False):
        for epoch in (0, 1):
            seen = []
            for rank in range(world):
                lay = Layout(rank, world, workers, batch, drop_last, shuffle, seed=3)
                mine = [worker_plan(counts, None, epoch, w, lay) for w in range(workers)]
                assert sum(len(m) for m in mine) == samples_per_rank(total, lay)
                seen += [int(g) for m in mine for g in m]
            assert len(seen) == len(set(seen))                           # nobody reads a sample twice
            order = epoch_order(counts, None, 3, epoch, shuffle).tolist()
            if drop_last:                                                # every rank: the same full batches
                per_rank = total // (world * batch) * batch
                assert seen == order[:world * per_rank]              # only the tail (< world x batch) is left
                assert total - len(seen) == total % (world * batch)
            else:
                assert sorted(seen) == list(range(total))


def test_shuffled_shard_order_changes_per_epoch_and_keeps_shards_whole():
    counts = np.array([4, 4, 4, 4, 4, 4])
    a, b = epoch_order(counts, None, 0, 0, True), epoch_order(counts, None, 0, 1, True)
    assert sorted(a) == sorted(b) == list(range(24)) and a.tolist() != b.tolist()
    for order in (a, b):                                                 # shard by shard, positions in order
        assert all(order[i + 1] == order[i] + 1 for i in range(0, 24, 4) for i in range(i, i + 3))


def test_consumed_batches_follow_the_dataloader_turns():
    # workers take turns; one with no batch left drops out: w0 w1 w2 w0 w2 w0 w2
    assert consumed_batches([3, 1, 3], 0) == ([0, 0, 0], 0)
    assert consumed_batches([3, 1, 3], 4) == ([2, 1, 1], 2)
    assert consumed_batches([3, 1, 3], 5) == ([2, 1, 2], 0)
    assert consumed_batches([3, 1, 3], 7) == ([3, 1, 3], 0)
    assert consumed_batches([2, 2], 3) == ([2, 1], 1)


# -- maskfeat prepare -----------------------------------------------------------------------------------
def test_prepare_folder_stores_every_file_as_it_is_in_folder_order(tmp_path):
    src = write_folder(tmp_path / "in", per_class=6)
    (src / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    m = make_shards(src, tmp_path / "out", shard_samples=5, procs=2)
    files = scan_folder(src)
    paths = [Path(files.path(i)) for i in range(len(files))]
    labels, classes = files.labels.tolist(), files.classes
    good = [(p, lbl) for p, lbl in zip(paths, labels) if p.name != "broken.jpg"]
    assert m.total == len(good) == 12 and [s.samples for s in m.shards] == [5, 5, 2]
    assert m.classes == classes == ["a", "b"] and m.label_counts == {0: 6, 1: 6} and m.inputs == 13
    assert m.skipped == [{"input": "b/broken.jpg", "reason": m.skipped[0]["reason"]}]
    assert "cannot decode" in m.skipped[0]["reason"]
    stored = []
    for n, shard in enumerate(m.shards):
        path = tmp_path / "out" / shard.name
        assert path.stat().st_size == shard.bytes
        import hashlib
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard.sha256
        samples = tar_samples(path)
        assert list(samples) == [f"{n:06d}_{i:06d}" for i in range(shard.samples)]
        stored += list(samples.values())
    for (p, lbl), s in zip(good, stored):                                # sample i = file i, bytes unchanged
        ext = p.suffix[1:]
        assert s[ext] == p.read_bytes() and int(s["cls"]) == lbl
        assert s["src"].decode() == str(p.relative_to(src))
    assert read_manifest(tmp_path / "out" / "manifest.json").total == 12


def _big_png(path: Path, seed: int) -> None:
    """A PNG of noise that takes a while to decode (so a kill lands while its shard is being written)."""
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)).save(path)


def test_prepare_killed_mid_write_resumes_to_exactly_the_inputs(tmp_path):
    src = write_folder(tmp_path / "in", per_class=9)
    for i in range(3):                                                   # slow inputs spread over the shards
        _big_png(src / "b" / f"{i * 2 + 1:03d}z.png", i)
    out = tmp_path / "out"
    cmd = [PYTHON, "-m", "maskfeat", "prepare", "--input", "folder", "--root", str(src), "--out", str(out),
           "--shard-samples", "3", "--procs", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    done_before_kill = []
    while time.time() < deadline:                    # wait for a shard done and another one half-written
        done_before_kill = sorted(p.name for p in out.glob("shard-*.tar"))
        if done_before_kill and list(out.glob(".shard-*.tar.tmp*")):
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)              # the command and its writer processes
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    temps = list(out.glob(".shard-*.tar.tmp*"))
    assert temps, "the kill did not land while a shard was being written"
    assert not (out / "manifest.json").exists()
    finals = sorted(out.glob("shard-*.tar"))
    for shard in finals:                             # whatever has a final name is a complete shard
        rec = json.loads((out / ".prepare" / f"{shard.name}.json").read_text()) \
            if (out / ".prepare" / f"{shard.name}.json").exists() else None
        samples = tar_samples(shard)
        assert rec is None or len(samples) == rec["samples"] == 3
    kept = {p.name: p.stat().st_mtime_ns for p in finals if (out / ".prepare" / f"{p.name}.json").exists()}

    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not list(out.glob(".*tmp*")) and not list((out / ".prepare").glob(".*tmp*"))
    for name, mtime in kept.items():                 # completed shards were kept, not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    m = read_manifest(out / "manifest.json")
    files = scan_folder(src)
    paths, labels = [Path(files.path(i)) for i in range(len(files))], files.labels.tolist()
    got = [s for shard in m.shards for s in tar_samples(out / shard.name).values()]
    assert len(got) == len(paths) == m.total == 21 and not m.skipped
    for p, lbl, s in zip(paths, labels, got):        # exactly the inputs' samples, in order, bytes unchanged
        assert s[p.suffix[1:]] == p.read_bytes() and int(s["cls"]) == lbl
    with pytest.raises(UserError, match="holds a prepare of other inputs or settings"):
        make_shards(src, out, shard_samples=4)


# -- reading --------------------------------------------------------------------------------------------
def _cfg(root: Path, *extra: str) -> dict:
    return resolve_config(PRETRAIN, None, ["data.source=shards", f"data.root={root}", "data.num_workers=0",
                                           "data.pin_memory=false", "model.img_size=32", "model.patch_size=8",
                                           "mask.min_num_patches=2", *extra])


def _indices(cfg: dict, epoch: int = 0) -> tuple[list[int], list]:
    loader = build_loader(build_pretrain_dataset(cfg), 2, cfg["data"], 0, 1, cfg["train"]["seed"],
                          drop_last=False)
    loader.set_epoch(epoch)
    idx, bad = [], []
    for batch in loader:
        idx += batch["index"].tolist()
        bad += [line for entry in batch["bad_paths"] for line in entry.split("\n") if line]
    return idx, bad


def test_pipe_urls_need_allow_pipe(tmp_path, capsys):
    make_shards(write_folder(tmp_path / "in", per_class=4), tmp_path / "out", shard_samples=3)
    pattern = f"pipe:cat {tmp_path}/out/shard-{{000000..000002}}.tar"
    with pytest.raises(ConfigError,
                       match=r"data.shards: 'pipe:' URLs run a shell command; set data.allow_pipe: true"):
        build_pretrain_dataset(_cfg(tmp_path / "out", f"data.shards={pattern}"))
    from maskfeat.cli import main
    assert main(["pretrain", "data.source=shards", f"data.root={tmp_path / 'out'}", f"data.shards={pattern}",
                 "model.arch=vit-pico", f"train.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("maskfeat pretrain: error: data.shards: 'pipe:' URLs") and len(err) == 1, err
    assert not (tmp_path / "run").exists()
    local, _ = _indices(_cfg(tmp_path / "out", "data.shuffle=false"))
    piped, bad = _indices(_cfg(tmp_path / "out", "data.shuffle=false", f"data.shards={pattern}",
                               "data.allow_pipe=true"))
    assert piped == local == list(range(8)) and not bad
    with pytest.raises(ConfigError, match="gives 2 URLs, the manifest lists 3"):
        build_pretrain_dataset(_cfg(tmp_path / "out",
                                    f"data.shards={tmp_path}/out/shard-{{000000..000001}}.tar"))
    with pytest.raises(ConfigError, match="scheme 'http:' is not supported"):
        build_pretrain_dataset(_cfg(tmp_path / "out", "data.shards=http://x/shard-{000000..000002}.tar"))


def _manifest_sizes_of_the_files(out: Path) -> None:
    """Make manifest.json list the shards' present sizes (a shard damaged after its size was checked)."""
    raw = json.loads((out / "manifest.json").read_text())
    for s in raw["shards"]:
        s["bytes"] = (out / s["name"]).stat().st_size
    (out / "manifest.json").write_text(json.dumps(raw))


def test_bad_samples_are_replaced_counted_and_named_by_shard_and_key(tmp_path):
    make_shards(write_folder(tmp_path / "in", per_class=6), tmp_path / "out", shard_samples=4)
    out = tmp_path / "out"
    rewrite_member(out / "shard-000001.tar", "000001_000000.jpg", b"\xff\xd8\xff garbage")   # undecodable
    rewrite_member(out / "shard-000000.tar", "000000_000000.png", b"")                      # empty file
    data = (out / "shard-000002.tar").read_bytes()
    (out / "shard-000002.tar").write_bytes(data[:3 * 512 + 200])        # truncated: the tar ends in sample 1
    _manifest_sizes_of_the_files(out)       # damage the size check at opening misses (a pipe: stream, say)
    idx, bad = _indices(_cfg(out, "data.shuffle=false"))
    assert idx == list(range(12))                                       # every index still comes, once
    named = sorted(line.split(" ")[0] for line in bad)
    assert named == sorted([f"{out}/shard-000000.tar:000000_000000", f"{out}/shard-000001.tar:000001_000000",
                            *(f"{out}/shard-000002.tar:000002_00000{i}" for i in range(4))]), bad
    assert any("[a/004.jpg]" in line and "cannot decode" in line for line in bad)     # the input it came from
    assert any("not read from the shard" in line for line in bad)
    with pytest.raises(UserError, match="samples in a row are unusable"):
        for p in sorted(out.glob("shard-*.tar")):
            p.write_bytes(b"")
        _manifest_sizes_of_the_files(out)
        _indices(_cfg(out))


def test_shards_that_do_not_match_their_manifest_are_refused(tmp_path):
    make_shards(write_folder(tmp_path / "in", per_class=4), tmp_path / "out", shard_samples=4)
    out = tmp_path / "out"
    (out / "shard-000000.tar").write_bytes((out / "shard-000001.tar").read_bytes())   # swapped content
    with pytest.raises(UserError, match="the shards do not match their manifest"):
        _indices(_cfg(out, "data.shuffle=false"))
    with pytest.raises(UserError, match="data.manifest: shard manifest not found"):
        build_pretrain_dataset(_cfg(tmp_path / "in"))


def test_set_epoch_skip_gives_the_rest_of_the_uninterrupted_epoch_for_any_stop(tmp_path):
    make_shards(write_folder(tmp_path / "in", per_class=7), tmp_path / "out", shard_samples=3)
    # 14 samples, 7 batches: 3 + 2 + 2
    cfg = _cfg(tmp_path / "out", "data.num_workers=3", "data.shuffle_buffer=4")
    loader = build_loader(build_pretrain_dataset(cfg), 2, cfg["data"], 0, 1, 0)
    loader.set_epoch(1)
    full = [b["index"].tolist() for b in loader]
    assert sorted(i for b in full for i in b) == list(range(14))
    for done in range(1, 7):                                   # resumed after `done` batches
        loader.set_epoch(1, skip=done * 2)
        assert [b["index"].tolist() for b in loader] == full[done:], done


def test_prepare_shuffle_seed_writes_a_fixed_random_order_and_cli_errors_are_one_line(tmp_path, capsys):
    from maskfeat.cli import main

    src = write_folder(tmp_path / "in", per_class=5)
    m = make_shards(src, tmp_path / "out", shard_samples=4, shuffle_seed=7)
    files = scan_folder(src)
    paths = [Path(files.path(i)) for i in range(len(files))]
    perm = np.random.default_rng(7).permutation(len(paths))
    got = [s for shard in m.shards for s in tar_samples(tmp_path / "out" / shard.name).values()]
    assert [s["src"].decode() for s in got] == [str(paths[i].relative_to(src)) for i in perm]
    assert sorted(s["src"].decode() for s in got) != [s["src"].decode() for s in got]
    for args, message in [(["--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
                           "--root: folder not found"),
                          (["--root", str(src), "--out", str(src)], "lies inside --root"),
                          (["--root", str(src), "--out", str(tmp_path)], "is not empty and holds no")]:
        assert main(["prepare", "--input", "folder", "--no-progress", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("maskfeat prepare: error: ") and message in err[0], err
    assert not (tmp_path / "o2").exists()


def test_prepare_list_file_keeps_its_order_and_labels(tmp_path):
    from maskfeat.data.prepare import PrepareSpec, prepare

    src = write_folder(tmp_path / "in", per_class=3)
    (src / "meta").mkdir()
    lines = ["b/001.jpg 7", "a/000.png 2", "a/002.jpg 7", "b/000.png 0"]
    (src / "meta" / "train.txt").write_text("\n".join(lines) + "\n")
    m = prepare(PrepareSpec("list", str(src), str(tmp_path / "out"), ann_file="meta/train.txt",
                            progress=False))
    got = list(tar_samples(tmp_path / "out" / m.shards[0].name).values())
    assert [(s["src"].decode(), int(s["cls"])) for s in got] == [(x.split()[0], int(x.split()[1]))
                                                                 for x in lines]
    assert m.label_counts == {7: 2, 2: 1, 0: 1} and m.classes == [] and m.num_classes == 8
    (src / "meta" / "train.txt").write_text("a/000.png 1\nmissing.jpg 0\n")
    with pytest.raises(UserError, match=r"^--ann-file: .* names 1\+ missing files, e.g. .*missing.jpg"):
        prepare(PrepareSpec("list", str(src), str(tmp_path / "out2"), ann_file="meta/train.txt",
                            progress=False))
