"""The manifest of a shard set written by ``maskfeat prepare`` (``manifest.json``).

A shard is a WebDataset tar: per sample the members '<key>.<ext>' (the image or video file's
bytes as they were), '<key>.cls' (the label, decimal text; absent when unlabelled) and
'<key>.src' (the input's path relative to the input root, for messages). Keys are
'<shard number>_<position in the shard>' ('000003_000017'), so a reader can check that a sample
is the one the manifest says it is. The global index of a sample (what seeds its crop and mask,
as the file index does for a folder) is its shard's offset (the samples of the shards before it,
in manifest order) plus its position.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..errors import UserError

MANIFEST_NAME = "manifest.json"
FORMAT = "maskfeat-shards/1"
KINDS = ("image", "video")


def sample_key(shard: int, position: int) -> str:
    return f"{shard:06d}_{position:06d}"


@dataclass
class ShardInfo:
    name: str          # file name, e.g. 'shard-000003.tar'
    samples: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    kind: str                                       # image | video
    shards: list[ShardInfo]
    classes: list[str] = field(default_factory=list)        # class names ([] when labels are bare ints)
    label_counts: dict[int, int] = field(default_factory=dict)   # label -> samples ({} when unlabelled)
    skipped: list[dict] = field(default_factory=list)       # [{'input': path, 'reason': text}]
    inputs: int = 0                                 # inputs listed (written + skipped)
    source: dict = field(default_factory=dict)      # how prepare was called (input kind, root, ...)

    @property
    def total(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def counts(self) -> np.ndarray:
        return np.array([s.samples for s in self.shards], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """Global index of each shard's first sample."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    @property
    def num_classes(self) -> int:
        return max(len(self.classes), max(self.label_counts, default=-1) + 1)

    def to_json(self) -> str:
        out = {"format": FORMAT, "total": self.total, **asdict(self)}
        out["label_counts"] = {str(k): v for k, v in sorted(self.label_counts.items())}
        return json.dumps(out, indent=1) + "\n"


def write_manifest(manifest: Manifest, path: str | Path) -> None:
    write_atomic(path, manifest.to_json().encode())


def read_manifest(path: str | Path) -> Manifest:
    """The manifest at ``path``; a missing, unreadable or inconsistent one is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data.manifest: shard manifest not found: {path} (written by maskfeat prepare)")
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r} is not {FORMAT!r}")
        shards = [ShardInfo(str(s["name"]), int(s["samples"]), int(s["bytes"]), str(s["sha256"]))
                  for s in raw["shards"]]
        m = Manifest(raw["kind"], shards, list(raw.get("classes", [])),
                     {int(k): int(v) for k, v in raw.get("label_counts", {}).items()},
                     list(raw.get("skipped", [])), int(raw.get("inputs", 0)), dict(raw.get("source", {})))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"data.manifest: {path} is not a maskfeat shard manifest "
                        f"({type(e).__name__}: {e})") from None
    if m.kind not in KINDS or not m.shards or min(m.counts) < 0:
        raise UserError(f"data.manifest: {path} lists no shards or has a bad kind / sample count")
    return m


def size_mismatch(manifest: Manifest, files: list[Path]) -> str:
    """'' when every local shard file has the size ``manifest`` lists, else a line naming the first
    that differs (a shard replaced by another prepare's, or cut short). Cheap: one stat per shard."""
    for info, path in zip(manifest.shards, files):
        size = path.stat().st_size
        if size != info.bytes:
            return (f"{path} is {size} bytes, its manifest lists {info.bytes}: the shard was replaced or "
                    f"damaged (maskfeat prepare --verify {path.parent} checks every shard's sha256)")
    return ""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_shards(folder: str | Path) -> tuple[int, list[str]]:
    """(shards checked, a line per shard whose size or sha256 differs from ``folder/manifest.json``)."""
    folder = Path(folder)
    manifest = read_manifest(folder / MANIFEST_NAME)
    bad = []
    for info in manifest.shards:
        path = folder / info.name
        if not path.is_file():
            bad.append(f"{path}: missing")
        elif path.stat().st_size != info.bytes:
            bad.append(f"{path}: {path.stat().st_size} bytes, the manifest lists {info.bytes}")
        elif sha256_of(path) != info.sha256:
            bad.append(f"{path}: sha256 differs from the manifest's")
    return len(manifest.shards), bad
