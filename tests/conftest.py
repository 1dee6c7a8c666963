import pytest
import torch

from helpers import MMPRETRAIN_FIXTURE, need, tiny_pretrain_overrides

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def fashion_mnist():
    """Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist): a test that needs them skips
    without them, except under CI, where it fails naming them."""
    from maskfeat.data import idx

    need(idx.FASHION_MNIST_ROOT.is_dir(),
         f"Fashion-MNIST in {idx.FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)")


@pytest.fixture
def torchcodec():
    """torchcodec with FFmpeg's shared libraries: skipped without them, failed under CI."""
    from maskfeat.data.video_decoders import torchcodec_available

    why = torchcodec_available()
    need(not why, f"torchcodec with FFmpeg's shared libraries ({why})")


@pytest.fixture(scope="session")
def mmpretrain_fixture():
    need(MMPRETRAIN_FIXTURE.is_file(), f"fixture {MMPRETRAIN_FIXTURE} (shared/ lies beside the repository)")
    return torch.load(MMPRETRAIN_FIXTURE, weights_only=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished 16-step tiny pre-training run (``tiny_pretrain_overrides``) for the whole session:
    read it, or copy it before changing anything in it."""
    from maskfeat.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["pretrain", *tiny_pretrain_overrides(out)]) == 0
    return out
