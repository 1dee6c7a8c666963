"""Where a shard set lives (local files or ``pipe:`` commands) and reading the samples of one shard.

``data.root`` is the folder ``maskfeat prepare`` wrote (manifest.json and the shards), or
``data.manifest`` names the manifest (the shards beside it). ``data.shards`` may name the shards
elsewhere with a brace pattern ('/mnt/in1k/shard-{000000..001023}.tar' or
'pipe:aws s3 cp s3://bucket/in1k/shard-{000000..001023}.tar -'), one URL per manifest shard, in
manifest order, each containing the shard's file name. A ``pipe:`` URL runs a shell command, so a
shared recipe could run code: such URLs are refused unless ``data.allow_pipe: true``.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..config import ConfigError
from ..errors import UserError
from .shard_manifest import MANIFEST_NAME, Manifest, read_manifest, sample_key, size_mismatch

META = ("cls", "src")               # members next to the payload (the image or video file)
READ_ERRORS = (OSError, EOFError, ValueError, tarfile.TarError)


@dataclass
class ShardSet:
    manifest: Manifest
    urls: list[str]                 # one per manifest shard

    def name(self, shard: int) -> str:
        return self.manifest.shards[shard].name


def expand(pattern: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(pattern))


def check_url(url: str, allow_pipe: bool, key: str) -> None:
    scheme = urlparse(url).scheme
    if scheme == "pipe":
        if not allow_pipe:
            raise ConfigError(f"{key}: 'pipe:' URLs run a shell command; set data.allow_pipe: true "
                              f"to allow them (only for recipes you trust)")
    elif scheme not in ("", "file") and len(scheme) > 1:      # len 1: a Windows drive letter
        raise ConfigError(f"{key}: URL scheme '{scheme}:' is not supported; use local paths or "
                          f"'pipe:<command writing the shard to stdout>' with data.allow_pipe: true")


def resolve_shards(root: str, pattern: str, manifest_path: str, allow_pipe: bool,
                   key: str = "data.shards") -> ShardSet:
    """The manifest and one URL per shard (see the module docstring); one-line errors naming the key."""
    if not root and not manifest_path:
        raise ConfigError("data.root: required for data.source=shards (the folder maskfeat prepare wrote), "
                          "or give data.manifest")
    urls = expand(pattern) if pattern else []
    for url in urls:                                 # before anything is read: a pipe: runs a command
        check_url(url, allow_pipe, key)
    path = Path(manifest_path) if manifest_path else Path(root) / MANIFEST_NAME
    manifest = read_manifest(path)
    names = [s.name for s in manifest.shards]
    if not pattern:                                  # beside the manifest
        urls = [str(path.parent / n) for n in names]
    else:
        if len(urls) != len(names):
            raise ConfigError(f"{key}: {pattern!r} gives {len(urls)} URLs, "
                              f"the manifest lists {len(names)} shards")
        wrong = next((i for i, (u, n) in enumerate(zip(urls, names)) if n not in u), None)
        if wrong is not None:
            raise ConfigError(f"{key}: URL {urls[wrong]!r} does not name shard {names[wrong]!r} "
                              f"(URLs must follow the manifest's order)")
    missing = [u for u in urls if urlparse(u).scheme in ("", "file") and not Path(_local(u)).is_file()]
    if missing:
        raise UserError(f"{key}: {len(missing)} shards not found, e.g. {missing[0]}")
    if all(urlparse(u).scheme in ("", "file") for u in urls) and (wrong := size_mismatch(
            manifest, [Path(_local(u)) for u in urls])):
        raise UserError(f"{key if pattern else 'data.root'}: {wrong}")
    return ShardSet(manifest, urls)


def _local(url: str) -> str:
    return urlparse(url).path if url.startswith("file:") else url


@dataclass
class RawSample:
    position: int                   # in its shard
    key: str
    payload: bytes | None           # the image / video file's bytes (None: missing or unreadable)
    label: int                      # -1 when the sample has no '.cls'
    error: str = ""                 # why the sample is unusable ('' when fine)
    src: str = ""


def parse_sample(position: int, key: str, members: dict[str, bytes]) -> RawSample:
    payloads = [ext for ext in members if ext not in META]
    src = members.get("src", b"").decode(errors="replace")
    if len(payloads) != 1:
        return RawSample(position, key, None, -1, f"{len(payloads)} data members ({', '.join(members)})", src)
    try:
        label = int(members["cls"]) if "cls" in members else -1
    except ValueError:
        return RawSample(position, key, None, -1, f"label {members['cls'][:20]!r} is not an integer", src)
    return RawSample(position, key, members[payloads[0]], label, "", src)


def _grouped(fileobj):
    """(key, {ext: bytes}) per sample of a tar stream, members grouped by key as WebDataset does."""
    from webdataset.tariterators import base_plus_ext, tar_file_iterator

    key, members = None, {}
    for f in tar_file_iterator(fileobj):
        prefix, ext = base_plus_ext(f["fname"])
        if prefix is None:
            continue
        if prefix != key and key is not None:
            yield key, members
            members = {}
        key = prefix
        members[ext.lower()] = f["data"]
    if key is not None:
        yield key, members


def read_shard(shards: ShardSet, shard: int, positions: list[int]):
    """RawSample of each wanted position (ascending) of one shard, in order. A sample the tar does not
    hold (truncated or unreadable shard, failing command) comes as a RawSample with an error."""
    from webdataset.gopen import gopen

    wanted, last = set(positions), positions[-1]
    got, error, stream = 0, "", None
    try:
        stream = gopen(shards.urls[shard], "rb")
        for pos, (key, members) in enumerate(_grouped(stream)):
            if key != sample_key(shard, pos):
                raise UserError(f"{shards.urls[shard]}: sample {pos} has key {key!r}, the manifest expects "
                                f"{sample_key(shard, pos)!r}: the shards do not match their manifest")
            if pos in wanted:
                yield parse_sample(pos, key, members)
                got += 1
            if pos >= last:
                break
    except READ_ERRORS as e:
        error = _describe(e)
    finally:
        closing = _close(stream)
    error = error or closing or "the tar holds fewer samples"
    for pos in positions[got:]:
        yield RawSample(pos, sample_key(shard, pos), None, -1, f"not read from the shard ({error})")


def _describe(e: Exception) -> str:
    text = str(e).splitlines()[0][:160] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _close(stream) -> str:
    """Close a shard; '' or why it failed. A ``pipe:`` command stopped early (we read what we wanted)
    exits by SIGPIPE, which counts only when samples are missing."""
    if stream is None:
        return ""
    try:
        stream.close()
    except READ_ERRORS as e:
        return _describe(e)
    return ""


def shard_set(data: dict, kind: str, split: str = "") -> ShardSet:
    """The shard set the ``data`` section names (data.root, data.shards, data.manifest, data.allow_pipe).
    ``split`` (labelled data): the shards of root/<split>/, and '{split}' in data.shards / data.manifest
    stands for the split's name."""
    root, pattern, manifest = data["root"], data["shards"], data["manifest"]
    if split:
        root = str(Path(root) / split) if root else ""
        pattern, manifest = pattern.replace("{split}", split), manifest.replace("{split}", split)
    shards = resolve_shards(root, pattern, manifest, data["allow_pipe"])
    if shards.manifest.kind != kind:
        raise UserError(f"data.source=shards: the shards of {root or manifest} "
                        f"hold {shards.manifest.kind} samples, this command needs {kind} samples")
    return shards
