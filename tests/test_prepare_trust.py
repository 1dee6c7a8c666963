"""Issue 18 (items 1-8, 11): prepare, shards and convert under what a new user does to them."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from helpers import (
    MMPRETRAIN_FIXTURE,
    PYTHON,
    cli_env,
    snapshot,
    tiny_pretrain_overrides,
)
from maskfeat.cli import main
from maskfeat.data.shard_manifest import read_manifest
from shard_helpers import tar_samples, write_folder

LATIN1 = os.fsdecode(b"caf\xe9_latin1.jpg")          # a file name that is not UTF-8


def prep(root, out, *extra):
    return main(["prepare", "--input", "folder", "--root", str(root), "--out", str(out), "--procs", "1",
                 "--no-progress", *extra])


def one_error(capsys, *words) -> str:
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln]
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in lines[0], lines
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_prepare_stores_a_non_utf8_file_name_round_trippable(tmp_path):
    root = write_folder(tmp_path / "nonutf", per_class=2, classes=("a",))
    shutil.copy(root / "a" / "001.jpg", root / "a" / LATIN1)
    assert prep(root, tmp_path / "sh") == 0
    samples = tar_samples(tmp_path / "sh" / "shard-000000.tar")
    srcs = sorted(s["src"] for s in samples.values())
    assert srcs == [b"a/000.png", b"a/001.jpg", b"a/caf\xe9_latin1.jpg"]
    assert os.fsdecode(srcs[2]) == f"a/{LATIN1}"          # the very name on disk
    assert read_manifest(tmp_path / "sh" / "manifest.json").total == 3


def test_symlink_loops_are_skipped_and_named_by_pretrain_and_prepare(tmp_path, capsys):
    root = write_folder(tmp_path / "loop", per_class=8, classes=("a",), size=(64, 64))
    os.symlink("x2.jpg", root / "x1.jpg")
    os.symlink("x1.jpg", root / "x2.jpg")
    assert prep(root, tmp_path / "sh") == 0
    m = read_manifest(tmp_path / "sh" / "manifest.json")
    assert (m.total, m.inputs) == (8, 10)
    assert [s["input"] for s in m.skipped] == ["x1.jpg", "x2.jpg"]
    assert "symbolic links" in m.skipped[0]["reason"]
    capsys.readouterr()
    argv = tiny_pretrain_overrides(tmp_path / "run", **{"train.epochs": 1, "data.samples_per_epoch": 8})
    assert main(["pretrain", "data.source=folder", f"data.root={root}", *argv]) == 0
    err = capsys.readouterr().err
    assert err.count("x1.jpg: skipped") == 1 and err.count("x2.jpg: skipped") == 1, err


def test_a_second_prepare_into_the_same_out_is_refused_naming_the_first_pid(tmp_path, capsys):
    root, out = write_folder(tmp_path / "imgs", per_class=2), tmp_path / "sh"
    code = ("import time; from maskfeat.run_lock import RunLock; "
            f"lock = RunLock({str(out)!r}, '--out'); lock.claim(); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert prep(root, out) == 2
        one_error(capsys, "--out", "in use by another run", f"PID {holder.pid}")
        assert sorted(p.name for p in out.iterdir()) == [".run.lock"]        # nothing of the first touched
    finally:
        holder.kill()
        holder.wait()
    assert prep(root, out) == 0 and read_manifest(out / "manifest.json").total == 4


def test_out_inside_root_is_refused_so_classes_never_change(tmp_path, capsys):
    root = write_folder(tmp_path / "inroot", per_class=2)
    for out in ("shards", "0shards"):
        assert prep(root, root / out) == 2
        one_error(capsys, "--out", "inside --root")
        assert sorted(p.name for p in root.iterdir()) == ["a", "b"]
    assert prep(root, tmp_path / "outside") == 0
    assert read_manifest(tmp_path / "outside" / "manifest.json").classes == ["a", "b"]


def test_the_same_prepare_spelled_differently_resumes(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "imgs", per_class=3)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    assert prep("imgs", "sh1", "--shard-samples", "2") == 0
    first = snapshot(tmp_path / "sh1")
    for root, out in (("imgs/", "sh1/"), (str(tmp_path / "imgs"), str(tmp_path / "sh1")), ("./imgs", "sh1")):
        assert prep(root, out, "--shard-samples", "2") == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert prep("../imgs", "../sh1", "--shard-samples", "2") == 0
    assert snapshot(tmp_path / "sh1") == first
    assert prep("../imgs", "../sh1", "--shard-samples", "3") == 2          # other settings: still refused
    one_error(capsys, "other inputs or settings")


def test_a_truncated_safetensors_is_one_line_in_every_reader(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from maskfeat.engine.checkpoint import load_checkpoint
    from maskfeat.errors import UserError

    save_file({"w": torch.zeros(64)}, str(tmp_path / "ok.safetensors"))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "ok.safetensors").read_bytes()[:30])
    assert main(["convert", str(cut), str(tmp_path / "out.safetensors")]) == 2
    one_error(capsys, "cut.safetensors", "not a readable checkpoint")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(UserError, match="cut.safetensors"):
        load_checkpoint(cut)
    assert main(["visualize", str(cut), str(tmp_path / "none.png"), "--out-dir", str(tmp_path)]) == 2
    one_error(capsys, "cut.safetensors")


SLOW_PREPARE = ("import sys, time\nimport maskfeat.data.prepare as p\ncheck = p.check_image\n"
                "def slow(data, suffix):\n    time.sleep(0.3)\n    return check(data, suffix)\n"
                "p.check_image = slow\nfrom maskfeat.cli import main\nsys.exit(main(sys.argv[1:]))")


def _stop_when(proc, ready, signum, group):
    deadline = time.time() + 120
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    (os.killpg if group else os.kill)(proc.pid, signum)
    return proc.communicate(timeout=120)


@pytest.mark.parametrize("signum, group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_a_signal_during_prepare_with_two_procs_is_one_line_and_keeps_whole_shards(tmp_path, signum, group,
                                                                                   code):
    """Ctrl-C reaches the whole process group (the writers too); SIGTERM the main process only."""
    root, out = write_folder(tmp_path / "imgs", per_class=8), tmp_path / "sh"
    argv = ["prepare", "--input", "folder", "--root", str(root), "--out", str(out), "--procs", "2",
            "--shard-samples", "2", "--no-progress"]
    proc = subprocess.Popen([PYTHON, "-c", SLOW_PREPARE, *argv], stderr=subprocess.PIPE, text=True,
                            env=cli_env(), start_new_session=True)
    _, err = _stop_when(proc, lambda: len(list(out.glob("shard-*.tar"))) >= 1, signum, group)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {signal.Signals(signum).name}" in lines[0], err
    assert "shards are complete and kept" in lines[0]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]                 # no temp file left
    for shard in out.glob("shard-*.tar"):                                       # every final name complete
        assert len(tar_samples(shard)) == 2
        record = out / ".prepare" / f"{shard.name}.json"         # (written just after the shard's rename)
        assert not record.exists() or json.loads(record.read_text())["bytes"] == shard.stat().st_size
    assert not (out / "manifest.json").exists()
    assert prep(root, out, "--shard-samples", "2") == 0
    assert read_manifest(out / "manifest.json").total == 16


SLOW_CONVERT = ("import sys, time; import maskfeat.convert.pipeline as p; save = p.save_timm; "
                "p.save_timm = lambda *a, **k: (save(*a, **k), print('written', flush=True), "
                "time.sleep(60))[0]; "
                "from maskfeat.cli import main; sys.exit(main(sys.argv[1:]))")


def test_ctrl_c_during_convert_is_one_line_and_writes_nothing(tmp_path):
    if not MMPRETRAIN_FIXTURE.is_file():
        pytest.skip(f"fixture {MMPRETRAIN_FIXTURE} not present")
    dst = tmp_path / "out.safetensors"
    proc = subprocess.Popen([PYTHON, "-c", SLOW_CONVERT, "convert", str(MMPRETRAIN_FIXTURE), str(dst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "written"                           # the temp file is complete
    _, err = _stop_when(proc, lambda: True, signal.SIGINT, True)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGINT" in lines[0] and "nothing written" in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, value", [("--prefix", "train/shard"), ("--prefix", "../escaped"),
                                           ("--shard-mb", "nan"), ("--shard-mb", "inf")])
def test_prepare_options_are_checked_before_anything_is_written(tmp_path, capsys, option, value):
    root = write_folder(tmp_path / "imgs", per_class=2)
    assert prep(root, tmp_path / "sh", option, value) == 2
    one_error(capsys, option, value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def _replaced_shard(tmp_path):
    """A prepare whose first shard was replaced by another prepare's (other size and sha256)."""
    a = write_folder(tmp_path / "a", per_class=8, size=(64, 64))
    b = write_folder(tmp_path / "b", per_class=8, size=(72, 72), seed=1)
    assert prep(a, tmp_path / "sa", "--shard-samples", "8") == 0
    assert prep(b, tmp_path / "sb", "--shard-samples", "8") == 0
    shutil.copy(tmp_path / "sb" / "shard-000000.tar", tmp_path / "sa" / "shard-000000.tar")
    return tmp_path / "sa"


def test_a_replaced_shard_is_refused_when_opened_and_by_verify(tmp_path, capsys):
    shards = _replaced_shard(tmp_path)
    capsys.readouterr()
    argv = tiny_pretrain_overrides(tmp_path / "run", **{"train.epochs": 1, "data.samples_per_epoch": 16})
    assert main(["pretrain", "data.source=shards", f"data.root={shards}", *argv]) == 2
    one_error(capsys, "shard-000000.tar", "bytes", "manifest")
    assert not (tmp_path / "run").exists()
    assert main(["prepare", "--verify", str(shards)]) == 2
    one_error(capsys, "--verify", "1 of 2 shards", "shard-000000.tar")
    assert main(["prepare", "--verify", str(tmp_path / "sb")]) == 0
    assert "2 shards match" in capsys.readouterr().out


def test_verify_finds_a_shard_of_the_same_size_whose_sha256_differs(tmp_path, capsys):
    root = write_folder(tmp_path / "imgs", per_class=2)
    assert prep(root, tmp_path / "sh") == 0
    shard = tmp_path / "sh" / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1                                        # tar padding: the size stays, the hash does not
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["prepare", "--verify", str(tmp_path / "sh")]) == 2
    one_error(capsys, "sha256", "shard-000000.tar")
