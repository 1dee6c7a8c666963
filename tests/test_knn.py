"""Weighted k-NN (DINO) against scikit-learn, feature gathering, and `maskfeat knn` on 1 and 2 processes."""
import json
import subprocess

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import Dataset

from eval_helpers import folder_overrides, make_folder
from helpers import PYTHON, cli_env
from maskfeat.cli import main
from maskfeat.data.loader import build_loader
from maskfeat.engine.distributed import DistEnv
from maskfeat.eval.knn import extract_features, knn_accuracy, knn_scores


def test_knn_matches_sklearn_weighted_cosine_vote():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g)
    train_y = torch.randint(0, 5, (300,), generator=g)
    train = centres[train_y] + 1.2 * torch.randn(300, 16, generator=g)
    test_y = torch.randint(0, 5, (120,), generator=g)
    test = centres[test_y] + 1.2 * torch.randn(120, 16, generator=g)
    T = 0.07
    ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1.0 - d) / T)).fit(train.numpy(), train_y.numpy())
    ours = knn_scores(train, train_y, test, num_classes=5, k=20, temperature=T, chunk=50).argmax(1)
    assert (ours.numpy() == ref.predict(test.numpy())).all()
    acc = knn_accuracy(train, train_y, test, test_y, 5)
    assert acc["top1"] == pytest.approx(100 * (ours == test_y).float().mean().item())
    assert 60 < acc["top1"] < 100 and acc["top5"] is None and acc["k"] == 20      # 5 classes: no top-5


def test_knn_scores_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[2.0, 0.0]])
    s = knn_scores(train, labels, test, num_classes=3, k=3, temperature=0.5)
    # neighbours by cosine: train 0 (1.0), train 2 (0.7071), train 1 (0.0)
    expected = torch.tensor([[np.exp(1 / 0.5), np.exp(0.70710678 / 0.5) + np.exp(0.0), 0.0]])
    torch.testing.assert_close(s, expected.float())


class _Indexed(Dataset):
    def __len__(self):
        return 11

    def __getitem__(self, key):
        i = key[0]
        return {"images": torch.tensor([float(i), 2.0 * i]), "label": i % 3, "index": i}


def test_extract_features_returns_dataset_order():
    loader = build_loader(_Indexed(), 4, {"num_workers": 0, "pin_memory": False, "persistent_workers": False},
                          0, 1, 0, shuffle=False, drop_last=False)
    feats, labels = extract_features(torch.nn.Identity(), loader, DistEnv())
    assert feats[:, 0].tolist() == list(range(11)) and labels.tolist() == [i % 3 for i in range(11)]


def test_knn_cli_one_and_two_processes_agree(tmp_path):
    root = make_folder(tmp_path / "shapes", n_train=10, n_val=5)     # 15 val images: odd, ranks pad one
    args = folder_overrides(root) + ["knn.k=5", "eval.batch_size=4", "eval.progress=false",
                                     "eval.save_features=true"]
    assert main(["knn", *args, f"eval.output_dir={tmp_path / 'one'}"]) == 0
    one = json.loads((tmp_path / "one" / "knn.json").read_text())
    assert one["train_samples"] == 30 and one["test_samples"] == 15 and one["world"] == 1
    assert 50.0 < one["top1"]                   # chance is 33%: even random features tell the patterns apart
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "maskfeat",
           "knn", *args, f"eval.output_dir={tmp_path / 'two'}"]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "knn.json").read_text())
    assert two["world"] == 2 and two["test_samples"] == 15 and two["train_samples"] == 30
    assert two["top1"] == pytest.approx(one["top1"]) and two["top5"] == one["top5"] is None
    f1, f2 = (torch.load(tmp_path / d / "features.pth", weights_only=True) for d in ("one", "two"))
    for key in ("train_features", "val_features", "train_labels", "val_labels"):
        torch.testing.assert_close(f2[key], f1[key], rtol=1e-4, atol=1e-5, msg=key)
