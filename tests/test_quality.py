"""bench/quality.py end to end on a sliver of Fashion-MNIST (the full bench is run by hand)."""
import importlib.util
import json

import pytest

from helpers import REPO
from maskfeat.data.idx import FASHION_MNIST_ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_quality_bench_smoke(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "bq"
    code = bench.main(["--seeds", "0", "--variants", "random", "hog", "pixel", "--steps", "20", "--batch", "16",
                       "--budget-min", "0.002", "--train-subset", "300", "--test-subset", "200", "--probe-epochs", "1",
                       "--threads", "1", "--workers", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "quality.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == {"random", "hog", "pixel"} and rows["random"]["steps"] == 0
    # a 0.002-minute budget over 2 runs (60 ms each) stops each run early, after at least one step
    assert 1 <= rows["hog"]["steps"] < 20 and 1 <= rows["pixel"]["steps"] < 20
    for r in rows.values():
        assert r["train_samples"] == 300 and r["test_samples"] == 200
        assert 5.0 <= r["knn_top1"] <= 100.0 and 5.0 <= r["probe_top1"] <= 100.0
    assert report["checks"]["seed0_hog_knn_gain"] == pytest.approx(rows["hog"]["knn_top1"] - rows["random"]["knn_top1"])
    table = capsys.readouterr().out
    assert "k-NN" in table and "seed 0: MaskFeat-HOG k-NN - random init" in table
