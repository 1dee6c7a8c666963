"""``data.decode=device``: JPEG decoding on the training device, batched, then crop and flip there.

The loader workers only read each file's bytes, its size from the JPEG header, and draw the
crop, the flip and the mask (``PretrainDataset(decode='device')``); ``collate_encoded`` packs a
batch of them; ``DeviceDecoder`` runs on the main process: one ``torchcodec.decoders.decode_jpeg(list,
device=...)`` call for the batch (nvJPEG on a GPU), then ``orient`` (the EXIF orientation the worker
read from the header; the crop was drawn on the upright size) unless that decoder applies it itself
(torchcodec's CPU decoder does; ``decoder_orients`` asks it once), and ``apply_crop``, on the device.
``DeviceDecodedLoader`` wraps the DataLoader so that the training loop receives ordinary batches
(``images`` uint8 (B, 3, S, S), already on the device).

Mixed batches. Files that are not plain 8-bit 1- or 3-component Huffman JPEGs with an end
marker (PNG, CMYK, arithmetic-coded, truncated, odd headers: ``images.device_jpeg_info``) are
decoded and cropped by the worker as in the CPU path and travel as finished crops ('decoded' at
the positions 'decoded_at'); unreadable ones are skipped there and counted in 'bad' (the next
file is read instead), as in the CPU path.

Failures on the device. A file that passed the header checks but that ``decode_jpeg`` rejects
is retried alone on the device, then decoded on the CPU (``decode_rgb_bytes``: torchcodec, then
PIL), then, if nothing decodes it, its place in the (fixed-size) batch is filled with a copy of
the next good image of the batch (its own mask is kept) and it is counted in 'bad' and named in
'bad_paths', so ``data.max_bad_fraction`` and the run log see it as they see a skipped file.
Decoding happens before the batch reaches the trainer, which reads 'bad' before the step.
"""
from __future__ import annotations

import io
from collections import Counter

import torch
import torchcodec
from PIL import Image
from torchcodec.decoders import decode_jpeg

from ..engine.device import is_cpu, is_cuda
from ..errors import UserError
from .images import decode_rgb_bytes, orient
from .pretrain_dataset import apply_crop

# Keys of an encoded batch that the decoder consumes; every other key passes through.
ENCODED_KEYS = ("jpeg", "jpeg_offsets", "boxes", "orient", "decoded", "decoded_at", "paths")


class EncodedCollate:
    """Collates ``PretrainDataset(decode='device')`` items (variable-length bytes) into one batch:
    'jpeg' uint8 (all files' bytes end to end), 'jpeg_offsets' int64 (B + 1,) (sample k's bytes are
    jpeg[off[k]:off[k + 1]], empty if the worker decoded it), 'boxes' int64 (B, 5) (top, left, h, w,
    flip), 'orient' int64 (B,) (EXIF orientations),
    'decoded' uint8 (K, 3, S, S) and 'decoded_at' int64 (K,) (the worker's crops and their
    places), 'paths', 'mask' bool (B, Hp, Wp), 'bad' int64 (B,), 'bad_paths' list of str."""

    def __init__(self, img_size: int):
        self.size = img_size

    def __call__(self, samples: list[dict]) -> dict:
        lengths = torch.tensor([s["jpeg"].numel() for s in samples], dtype=torch.int64)
        offsets = torch.zeros(len(samples) + 1, dtype=torch.int64)
        offsets[1:] = lengths.cumsum(0)
        at = [k for k, s in enumerate(samples) if "images" in s]
        batch = {
            "jpeg": torch.cat([s["jpeg"] for s in samples]),
            "jpeg_offsets": offsets,
            "boxes": torch.stack([s["box"] for s in samples]),
            "orient": torch.tensor([s["orient"] for s in samples], dtype=torch.int64),
            "decoded": (torch.stack([samples[k]["images"] for k in at]) if at
                        else torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)),
            "decoded_at": torch.tensor(at, dtype=torch.int64),
            "paths": [s["path"] for s in samples],
            "bad": torch.tensor([s["bad"] for s in samples], dtype=torch.int64),
            "bad_paths": [s["bad_paths"] for s in samples],
        }
        if "mask" in samples[0]:
            batch["mask"] = torch.stack([s["mask"] for s in samples])
        return batch


def check_device_decode(device: torch.device) -> None:
    """A one-line UserError unless this torchcodec decodes a list of JPEGs on ``device``
    (a GPU needs torchcodec built with CUDA, nvJPEG: CUDA only)."""
    if not (is_cuda(device) or is_cpu(device)):
        raise UserError(f"data.decode=device: JPEG decoding on the device needs CUDA (nvJPEG), the run is on "
                        f"{device.type}; set data.decode=cpu")
    try:
        probe = _probe_jpeg(16, 16)
        out = decode_jpeg([probe, probe], mode="RGB", device=device)
        reason = "" if (isinstance(out, list) and len(out) == 2 and tuple(out[0].shape) == (3, 16, 16)
                        and out[0].device.type == device.type) else f"got {type(out).__name__}"
    except (TypeError, RuntimeError, ValueError) as e:
        reason = _short(e, 120)
    if reason:
        raise UserError(f"data.decode=device: torchcodec {torchcodec.__version__} cannot decode a batch "
                        f"of JPEGs on {device} ({reason}); it needs a torchcodec built with CUDA (nvJPEG), "
                        f"or set data.decode=cpu")


def _probe_jpeg(width: int, height: int, orientation: int = 1) -> torch.Tensor:
    """A small black JPEG tagged with this EXIF orientation, as the decoder takes it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="JPEG", exif=exif.tobytes())
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def decoder_orients(device: torch.device) -> bool:
    """Whether ``decode_jpeg`` on ``device`` applies the EXIF orientation itself (a 16 x 8 probe
    tagged 'rotate 90' comes back 8 wide); asked once, as torchcodec's docs do not say."""
    try:
        out = decode_jpeg([_probe_jpeg(16, 8, 6)], mode="RGB", device=device)
    except (TypeError, RuntimeError, ValueError):
        return False
    return tuple(out[0].shape) == (3, 16, 8)


def _short(e: Exception, limit: int = 80) -> str:
    """The last line of an error, without a 'function, /path/file.cpp:NN, ' prefix."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    if ".cpp:" in line:
        line = line.rsplit(", ", 1)[-1]
    return line[:limit]


class DeviceDecoder:
    """Encoded batch (``EncodedCollate``) -> the same batch with 'images' uint8 (B, 3, size, size)
    on ``device`` and 'bad' / 'bad_paths' updated; ``stats`` counts where images were decoded."""

    def __init__(self, img_size: int, device, check: bool = True):
        self.size, self.device = img_size, torch.device(device)
        if check:
            check_device_decode(self.device)
        # A side stream of our own, idle whenever decode_jpeg is called: torchvision's nvJPEG decoder
        # allocated the outputs on the current stream but wrote them from nvJPEG's private stream
        # without waiting for it (torchvision PR #9606); kept as a safeguard around torchcodec's.
        self.stream = torch.cuda.Stream(self.device) if is_cuda(self.device) else None
        self.orients = decoder_orients(self.device)       # else ``orient`` turns the images upright here
        self.stats: Counter = Counter()

    def __call__(self, batch: dict) -> dict:
        if self.stream is None:
            return self._decode(batch)
        main = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            self.stream.synchronize()
            out = self._decode(batch)
        main.wait_stream(self.stream)
        out["images"].record_stream(main)
        return out

    def _decode_jpegs(self, datas: list[torch.Tensor], orientations: list[int]) -> list:
        """One batched decode_jpeg; if it raises, each alone on the device, then on the CPU.
        Items: uint8 (3, H, W) on the device, upright, or the error message of an undecodable file."""
        if not datas:
            return []
        try:
            out = decode_jpeg(datas, mode="RGB", device=self.device)
            self.stats["device"] += len(datas)
            return [self._upright(img, o) for img, o in zip(out, orientations)]
        except (RuntimeError, ValueError):
            pass
        results = []
        for data, o in zip(datas, orientations):
            try:
                results.append(self._upright(decode_jpeg(data, mode="RGB", device=self.device), o))
                self.stats["device"] += 1
                continue
            except (RuntimeError, ValueError) as e:
                device_error = _short(e)
            try:
                results.append(decode_rgb_bytes(data.numpy().tobytes()).to(self.device))   # upright
                self.stats["cpu_fallback"] += 1
            except ValueError as e:
                results.append(f"undecodable: decode_jpeg on {self.device.type}: {device_error}; "
                               f"CPU: {_short(e)}")
                self.stats["failed"] += 1
        return results

    def _upright(self, img: torch.Tensor, orientation: int) -> torch.Tensor:
        return img if self.orients else orient(img, orientation)

    def _decode(self, batch: dict) -> dict:
        offsets, boxes = batch["jpeg_offsets"].tolist(), batch["boxes"].tolist()
        n = len(boxes)
        bad, bad_paths = batch["bad"].clone(), list(batch["bad_paths"])
        images: list = [None] * n
        todo = [k for k in range(n) if offsets[k + 1] > offsets[k]]
        flat = batch["jpeg"]
        orientations = batch["orient"].tolist()
        encoded = [flat[offsets[k]:offsets[k + 1]] for k in todo]
        for k, got in zip(todo, self._decode_jpegs(encoded, [orientations[k] for k in todo])):
            if isinstance(got, str):
                bad[k] = 1                              # this item's sample is bad: counted once
                bad_paths[k] = "\n".join(filter(None, [bad_paths[k], f"{batch['paths'][k]} ({got})"]))
            else:
                images[k] = apply_crop(got, boxes[k][:4], bool(boxes[k][4]), self.size)
        at = batch["decoded_at"].tolist()
        if at:
            crops = batch["decoded"].to(self.device, non_blocking=True)
            for j, k in enumerate(at):
                images[k] = crops[j]
            self.stats["worker_cpu"] += len(at)
        good = [k for k in range(n) if images[k] is not None]
        if not good:
            named = [line for entry in bad_paths for line in entry.split("\n") if line]
            raise UserError(f"data.decode=device: none of the {n} images of a batch could be decoded, "
                            f"e.g. {named[0] if named else batch['paths'][0]}")
        for k in range(n):
            if images[k] is None:                       # fill with the next good image of the batch
                images[k] = images[next((g for g in good if g > k), good[0])]
        out = {key: value for key, value in batch.items() if key not in ENCODED_KEYS}
        out.update(images=torch.stack(images), bad=bad, bad_paths=bad_paths)
        return out


class DeviceDecodedLoader:
    """A DataLoader of encoded batches that yields decoded ones; ``sampler``, ``dataset``,
    ``len()`` and every other attribute are the DataLoader's."""

    def __init__(self, loader, decoder: DeviceDecoder):
        self.loader, self.decoder = loader, decoder

    def __iter__(self):
        for batch in self.loader:
            yield self.decoder(batch)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        if name in ("loader", "decoder"):
            raise AttributeError(name)
        return getattr(self.loader, name)
