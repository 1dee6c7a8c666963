"""Shards for the tests: tiny image folders written out by `maskfeat prepare`."""
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from maskfeat.data.prepare import PrepareSpec, prepare


def write_folder(root: Path, per_class: int = 8, classes=("a", "b"), size=(40, 30), seed: int = 0) -> Path:
    """root/<class>/<i>.jpg|png: random pictures of slightly varying sizes, JPEG and PNG mixed."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
            img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            img.save(root / c / (f"{i:03d}.png" if i % 3 == 0 else f"{i:03d}.jpg"))
    return root


def make_shards(src: Path, out: Path, shard_samples: int = 5, procs: int = 1, **kw):
    return prepare(PrepareSpec("folder", str(src), str(out), shard_samples=shard_samples, procs=procs,
                               progress=False, **kw))


def tar_samples(path: Path) -> dict:
    """{key: {ext: bytes}} of one tar."""
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def rewrite_member(path: Path, name: str, data: bytes) -> None:
    """Replace one member of a tar (same order of members) by ``data``."""
    members = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            members.append((m, data if m.name == name else tar.extractfile(m).read()))
    with tarfile.open(path, "w") as tar:
        for m, d in members:
            m.size = len(d)
            tar.addfile(m, io.BytesIO(d))
