"""Image folders scanned with ``os.scandir`` into a ``FileIndex``.

Order (it decides crops, masks and batches, so it is the one the earlier pathlib scan gave):
the image files at the top of the folder, sorted by name, then each class folder (sorted by name,
hidden ones left out) depth-first, every folder's entries sorted by name; that is the order of
``sorted(Path(root, cls).rglob('*'))``.

Symbolic links. A link to a file is a file. A link to a folder is followed when it leads out of the
scanned tree to a folder not scanned yet (a class folder kept on another disk, say); it is not
followed (and noted in ``FileIndex.notes``) when it points into the tree (its files are scanned
through their real path already), at a folder above the one it lies in or above the tree (a loop),
or at a folder scanned before through another link. So no file is counted twice, no scan loops,
and a link back up the tree never becomes a class. An entry that cannot be followed at all (links
that loop, ``x1.jpg -> x2.jpg -> x1.jpg``) is skipped and named once on stderr (and in the notes).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from .file_index import FileIndex

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
_MAX_NOTES = 20
_SKIPPED = ": skipped ("


def skipped_of(notes: Sequence[str]) -> list[dict]:
    """The entries a scan skipped, as prepare's manifest lists them ({'input': path, 'reason': why})."""
    return [{"input": n.split(_SKIPPED, 1)[0], "reason": n.split(_SKIPPED, 1)[1][:-1]}
            for n in notes if _SKIPPED in n]


def is_image_name(name: str) -> bool:
    """``Path(name).suffix.lower() in IMG_EXTENSIONS`` (a leading dot is not a suffix)."""
    i = name.rfind(".")
    return 0 < i < len(name) - 1 and name[i:].lower() in IMG_EXTENSIONS


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Walker:
    """Depth-first walk in sorted order, following symbolic links to folders only where safe."""

    def __init__(self, root: str):
        self.root, self.root_real = root, os.path.realpath(root)
        self.visited: set[str] = set()          # real paths of the folders scanned outside the tree
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(message)

    def entries(self, rel: str) -> list[os.DirEntry]:
        try:
            with os.scandir(os.path.join(self.root, rel)) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as e:
            if not rel:
                raise UserError(f"data.root: cannot list {self.root} ({e.strerror or e})") from None
            self.note(f"{os.path.join(self.root, rel)}: not scanned ({e.strerror or e})")
            return []

    def folder_real(self, entry: os.DirEntry, here_real: str) -> str | None:
        """The real path to scan for the folder ``entry`` found in ``here_real``; None to leave it out."""
        if not entry.is_symlink():
            real = os.path.join(here_real, entry.name)
            return None if real in self.visited else real
        target = os.path.realpath(entry.path)
        if _within(target, self.root_real) or _within(self.root_real, target) or _within(here_real, target):
            why = "it points into or above the scanned folder"
        elif target in self.visited:
            why = "its target was scanned already"
        else:
            return target
        self.note(f"{entry.path} -> {target}: link not followed ({why})")
        return None

    def kind(self, entry: os.DirEntry) -> bool | None:
        """True for a folder, False for anything else; None (skipped and named) for an entry that cannot
        be followed (a link loop: 'Too many levels of symbolic links')."""
        try:
            return entry.is_dir()
        except OSError as e:
            note = f"{entry.path}{_SKIPPED}{e.strerror or e})"
            self.note(note)
            print(f"maskfeat: {note}", file=sys.stderr)
            return None

    def walk(self, rel: str, real: str, out: list[str]) -> None:
        """Append the image files under the folder ``rel`` (relative to the root) to ``out``."""
        stack = [(rel, real, iter(self.entries(rel)))]
        while stack:
            here, here_real, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                stack.pop()
                continue
            name = f"{here}/{entry.name}"
            is_dir = self.kind(entry)
            if is_dir is None:
                continue
            if is_dir:
                sub_real = self.folder_real(entry, here_real)
                if sub_real is not None:
                    if not _within(sub_real, self.root_real):
                        self.visited.add(sub_real)
                    stack.append((name, sub_real, iter(self.entries(name))))
            elif entry.is_file() and is_image_name(entry.name):
                out.append(name)


def scan_folder(root: str | Path, classes: Sequence[str] | None = None, key: str = "data.root") -> FileIndex:
    """Images under ``root``: class sub-folders (label = index of the folder's name in ``classes``, by
    default the sorted folder names) and files at the top (label -1). ``classes`` given: a class
    folder not among them is an error (labelled splits share the train split's classes)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{key}: folder not found: {root}")
    walker = _Walker(str(root))
    top = walker.entries("")
    kinds = [walker.kind(e) for e in top]
    names = [e.name for e, d in zip(top, kinds) if d is False and e.is_file() and is_image_name(e.name)]
    counts, found = [len(names)], []
    for entry, is_dir in zip(top, kinds):
        if is_dir and not entry.name.startswith("."):
            real = walker.folder_real(entry, walker.root_real)      # (after the folders before it)
            if real is None:
                continue
            if not _within(real, walker.root_real):
                walker.visited.add(real)
            walker.walk(entry.name, real, names)
            found.append(entry.name)
            counts.append(len(names) - sum(counts))
    if not names:
        raise UserError(f"{key}: no images ({', '.join(IMG_EXTENSIONS[:4])}, ...) under {root}")
    labels = np.repeat(np.array([-1] + _class_indices(found, classes, root, key), dtype=np.int64), counts)
    if classes is None:
        classes = found if (labels >= 0).any() else []
    return FileIndex.from_names(names, labels, root=str(root), classes=classes, notes=walker.notes)


def _class_indices(found: list[str], classes: Sequence[str] | None, root: Path, key: str) -> list[int]:
    if classes is None:
        return list(range(len(found)))
    position = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in found if name not in position]
    if unknown:
        raise UserError(f"{key}: class folder {unknown[0]!r} of {root} is not a class of the train split "
                        f"({len(classes)} classes: {', '.join(list(classes)[:5])}"
                        f"{', ...' if len(classes) > 5 else ''})")
    return [position[name] for name in found]


SPLIT_FOLDERS = ("train", "val", "test")


def split_folders(root: str | Path) -> list[str]:
    """The split sub-folders (train, val, test) of ``root`` when it holds train/ and val/ or test/ (the
    ImageFolder / ImageNet layout as downloaded); else []."""
    found = [name for name in SPLIT_FOLDERS if os.path.isdir(os.path.join(root, name))]
    return found if "train" in found and len(found) > 1 else []
