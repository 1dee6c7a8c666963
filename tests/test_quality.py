"""bench/quality.py end to end on a sliver of Fashion-MNIST (the full bench is run by hand)."""
import json

import pytest
import torch

from helpers import load_bench


@pytest.mark.usefixtures("fashion_mnist")
def test_quality_bench_smoke(tmp_path, capsys):
    bench = load_bench("quality")
    out = tmp_path / "bq"
    code = bench.main(["--seeds", "0", "--variants", "random", "hog", "pixel", "--steps", "20",
                       "--batch", "16", "--budget-min", "0.002", "--train-subset", "300",
                       "--test-subset", "200", "--probe-epochs", "1", "--threads", "1", "--workers", "0",
                       "--out", str(out)])
    assert code == 0
    report = json.loads((out / "quality.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == {"random", "hog", "pixel"} and rows["random"]["steps"] == 0
    # a 0.002-minute budget over 2 runs (60 ms each) stops each run early, after at least one step
    assert 1 <= rows["hog"]["steps"] < 20 and 1 <= rows["pixel"]["steps"] < 20
    for r in rows.values():
        assert r["train_samples"] == 300 and r["test_samples"] == 200
        # 10 classes: chance is 10%; measured k-NN 34-36%, probe 24-26% (200 test images: +-3%)
        assert 25.0 <= r["knn_top1"] <= 100.0 and 15.0 <= r["probe_top1"] <= 100.0, r
    gain = rows["hog"]["knn_top1"] - rows["random"]["knn_top1"]
    assert report["checks"]["seed0_hog_knn_gain"] == pytest.approx(gain)
    table = capsys.readouterr().out
    assert "k-NN" in table and "seed 0: MaskFeat-HOG k-NN - random init" in table


@pytest.mark.usefixtures("fashion_mnist")
def test_quality_bench_visible_variant_at_equal_minutes(tmp_path, capsys):
    bench = load_bench("quality")
    out = tmp_path / "bq"
    code = bench.main(["--seeds", "0", "--variants", "hog", "visible@0.75", "--schedule", "minutes",
                       "--steps", "5", "--batch", "16", "--budget-min", "0.03", "--calibrate-steps", "4",
                       "--train-subset", "300", "--test-subset", "200", "--probe-epochs", "1",
                       "--threads", "1", "--workers", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "quality.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    share = 0.03 / 2                                     # CPU minutes per run
    for r in rows.values():
        # the schedule was sized by a calibration (not --steps) to the run's share of the budget
        assert r["scheduled_steps"] == max(1, int(0.97 * share * 60 / r["calibrated_step_cpu_s"]))
        assert 1 <= r["steps"] <= r["scheduled_steps"]
        # the budget holds, to a step or two and the run's fixed costs (loader start, checkpoint, loss plot)
        assert r["pretrain_min"] * 60 <= share * 60 + 2 * r["step_cpu_s"] + 1.0
        assert 25.0 <= r["knn_top1"] <= 100.0, r                  # chance 10%; measured 35-40%
    ckpt = torch.load(rows["visible@0.75"]["checkpoint"], weights_only=True)
    assert ckpt["config"]["model"]["encoder"] == "visible" and ckpt["config"]["mask"]["ratio"] == 0.75
    diff = report["checks"]["seed0_visible@0.75_minus_hog"]
    assert diff["knn"] == pytest.approx(rows["visible@0.75"]["knn_top1"] - rows["hog"]["knn_top1"])
    assert "visible@0.75 - hog (full encoder)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "visible@1.5"])
