"""Runs that cannot be lost (issue 11, items 3, 5, 6, 8, 9, 10, 12): a finished run started again
writes nothing, a fresh start never replaces a run unasked, one run per folder at a time, a failed
start changes nothing, converted files appear whole or not at all, clear messages."""
import os
import shutil
import subprocess

import pytest
import torch

from helpers import PYTHON, REPO, cli_env, log_steps, snapshot, tiny_pretrain_overrides
from maskfeat.cli import main
from maskfeat.engine.checkpoint import load_checkpoint


@pytest.fixture
def finished(tiny_run):
    """A finished tiny pre-training run (16 steps), shared by the session: only read."""
    return tiny_run


@pytest.fixture
def run_copy(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def one_error(capsys, *names) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ": error: " in err and "Traceback" not in err, err
    for name in names:
        assert name in err, err
    return err


def test_the_same_command_twice_continues_or_reports_finished_and_writes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    assert load_checkpoint(run_copy / "last.pth")["step"] == 16
    capsys.readouterr()
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy)]) == 0
    err = capsys.readouterr().err
    assert "already finished at step 16 of 16" in err and "nothing written" in err
    assert snapshot(run_copy) == before                          # last.pth, log, plot, config: byte-identical


def test_more_epochs_continue_the_finished_run(run_copy, capsys):
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy, **{"train.epochs": 3})]) == 0
    assert f"resumed from {run_copy / 'last.pth'} at step 16" in capsys.readouterr().err
    assert log_steps(run_copy / "log.jsonl") == list(range(1, 25))
    assert load_checkpoint(run_copy / "last.pth")["step"] == 24


def test_a_fresh_start_over_a_run_is_refused_unless_overwrite(run_copy, capsys):
    before = snapshot(run_copy)
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy), "train.resume="]) == 2
    one_error(capsys, "holds a run", "last.pth", "train.overwrite=true")
    assert snapshot(run_copy) == before
    (run_copy / "epoch_9.pth").write_bytes(b"an old checkpoint")        # not of this run: removed too
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy), "train.resume=", "train.overwrite=true",
                 "train.max_steps=3"]) == 0
    assert "removed" in capsys.readouterr().err
    assert log_steps(run_copy / "log.jsonl") == [1, 2, 3]              # a new log, not appended
    assert load_checkpoint(run_copy / "last.pth")["step"] == 3 and not (run_copy / "epoch_9.pth").exists()


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first_pid(run_copy, capsys):
    # plays the first, running run
    holder = subprocess.Popen([PYTHON, "-c", f"import sys, time; from pathlib import Path; "
                               f"from maskfeat.engine.run_folder import RunLock; "
                               f"lock = RunLock(Path({str(run_copy)!r})); lock.claim(); "
                               f"print('locked', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run_copy)
        assert main(["pretrain", *tiny_pretrain_overrides(run_copy, **{"train.epochs": 3})]) == 2
        one_error(capsys, "in use by another run", f"PID {holder.pid}")
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy, **{"train.epochs": 3})]) == 0


@pytest.mark.parametrize("case", ["missing", "plain_state_dict", "other_shape", "finetune_kind"])
def test_a_bad_resume_checkpoint_is_one_line_and_changes_nothing(run_copy, tmp_path, capsys, case):
    ckpt = load_checkpoint(run_copy / "last.pth")
    bad = tmp_path / f"{case}.pth"
    if case == "plain_state_dict":
        torch.save(ckpt["model"], bad)
    elif case == "finetune_kind":
        torch.save({"model": ckpt["model"], "config": ckpt["config"]}, bad)
    elif case == "other_shape":
        other = tmp_path / "other"
        assert main(["pretrain", *tiny_pretrain_overrides(other, **{"model.img_size": 32,
                                                                    "train.max_steps": 1})]) == 0
        shutil.copy(other / "last.pth", bad)
    before = snapshot(run_copy)
    capsys.readouterr()
    assert main(["pretrain", *tiny_pretrain_overrides(run_copy, **{"train.epochs": 3}),
                 f"train.resume={bad}", "train.overwrite=true"]) == 2
    expected = {"missing": "checkpoint not found", "plain_state_dict": "a plain state dict",
                "other_shape": "another model shape", "finetune_kind": "weights-only"}[case]
    one_error(capsys, "train.resume", str(bad), expected)
    assert snapshot(run_copy) == before                # config.yaml included: nothing is written


@pytest.mark.parametrize("epochs", [0, -3])
def test_zero_or_negative_epochs_are_refused(tmp_path, capsys, epochs):
    assert main(["pretrain", *tiny_pretrain_overrides(tmp_path / "run", **{"train.epochs": epochs})]) == 2
    one_error(capsys, "train.epochs", "whole number >= 1")
    assert not (tmp_path / "run").exists()


# -- convert ------------------------------------------------------------------------------------

def finetuned_checkpoint(tmp_path):
    """What `maskfeat finetune` writes: timm names, with its config."""
    from maskfeat.eval.classifier import build_classifier
    from maskfeat.tasks import build_config

    cfg = build_config("finetune", None, ["model.arch=vit-pico", "model.img_size=32", "model.patch_size=16",
                                          "model.pretrained=", "model.num_classes=5"])
    torch.manual_seed(0)
    model = build_classifier("vit-pico", 32, 16, 5, "avg", 0.0, 0.02).eval()
    path = tmp_path / "finetuned.pth"
    torch.save({"model": model.state_dict(), "config": cfg, "step": 7}, path)
    return model, path


def test_a_finetuned_checkpoint_exports_to_timm_with_equal_logits(tmp_path, capsys):
    import timm
    from safetensors.torch import load_file

    model, path = finetuned_checkpoint(tmp_path)
    out = tmp_path / "ft.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    assert "classifier: 96x2, 5 classes, pool avg" in capsys.readouterr().out
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=96, depth=2, num_heads=3,
                            img_size=32, num_classes=5, global_pool="avg", fc_norm=True).eval()
    net.load_state_dict(load_file(str(out)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-6)


def test_a_failed_timm_check_leaves_the_earlier_file_and_no_new_one(tmp_path, capsys, monkeypatch):
    from maskfeat.convert import pipeline
    from maskfeat.errors import UserError

    _, path = finetuned_checkpoint(tmp_path)
    out = tmp_path / "ft.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    good = out.read_bytes()

    def broken(*a, **k):
        raise UserError(f"{a[0]}: timm features differ from ours by 1")
    monkeypatch.setattr(pipeline, "verify_timm", broken)
    capsys.readouterr()
    assert main(["convert", str(path), str(out)]) == 2
    one_error(capsys, "timm features differ")
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetuned.pth", "ft.safetensors"]
    assert main(["convert", str(path), str(tmp_path / "new.safetensors")]) == 2
    assert not (tmp_path / "new.safetensors").exists()


def test_converted_files_get_the_modes_of_any_new_file(tmp_path, capsys):
    _, path = finetuned_checkpoint(tmp_path)
    umask = os.umask(0o022)
    try:
        assert main(["convert", str(path), str(tmp_path / "a.safetensors")]) == 0
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(umask)
    assert ((tmp_path / "a.safetensors").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
            == 0o644)


def test_convert_into_a_missing_folder_is_one_line(tmp_path, capsys):
    _, path = finetuned_checkpoint(tmp_path)
    assert main(["convert", str(path), str(tmp_path / "no" / "such" / "y.pth")]) == 2
    one_error(capsys, "does not exist", str(tmp_path / "no" / "such"))


# -- visualize ------------------------------------------------------------------------------------

def test_visualize_images_with_the_same_name_in_two_folders_keeps_both(finished, tmp_path, capsys):
    from maskfeat.data import skimage_photos

    photos = skimage_photos()
    for folder, photo in (("a", photos[0]), ("b", photos[1])):
        (tmp_path / folder).mkdir()
        shutil.copy(photo, tmp_path / folder / "x.png")
    out = tmp_path / "vis"
    assert main(["visualize", str(finished / "last.pth"), str(tmp_path / "a" / "x.png"),
                 str(tmp_path / "b" / "x.png"), "--out-dir", str(out)]) == 0
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["a_x_maskfeat.png", "b_x_maskfeat.png"]
    assert (out / pngs[0]).read_bytes() != (out / pngs[1]).read_bytes()


# -- messages that say what is wrong ----------------------------------------------------------------

def test_messages_name_the_real_problem(tmp_path, capsys):
    assert main(["pretrain", "modality=audio"]) == 2
    one_error(capsys, "modality: 'audio'", "choose image or video")
    assert main(["run", "--config", str(REPO / "configs/finetune/vit-base-p16_in1k.yaml")]) == 2
    one_error(capsys, "is a finetune recipe", "maskfeat finetune --config")
    evil = tmp_path / "evil.yaml"
    evil.write_text('model:\n  arch: !!python/object/apply:os.system ["echo pwned"]\n')
    assert main(["pretrain", "--config", str(evil)]) == 2
    one_error(capsys, "line 2", "YAML tag '!!python/object/apply:os.system' refused")
    assert main(["pretrain", "zzz=1"]) == 2
    assert "did you mean" not in one_error(capsys, "unknown config key 'zzz'")
    assert main(["pretrain", "optim.lrr=1"]) == 2
    one_error(capsys, "did you mean 'optim.lr'")
