"""data.decode=device (JPEG decoding by torchcodec.decoders.decode_jpeg on the training device) against the
CPU path, on the CPU: the same crops, masks and bad-file counts through the real DataLoader."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from helpers import cli_env, tiny_pretrain_overrides
from maskfeat.config import resolve_config
from maskfeat.data import build_pretrain_dataset, build_pretrain_loader, device_decode
from maskfeat.data.device_decode import DeviceDecodedLoader
from maskfeat.data.images import device_jpeg_info, jpeg_header
from maskfeat.data.pretrain_dataset import apply_crop, draw_crop
from maskfeat.defaults import PRETRAIN
from maskfeat.errors import UserError

CPU = torch.device("cpu")


def jpeg_bytes(arr, mode=None, **kw) -> bytes:
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def resized(arr, width, height):
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))


def bogus_sampling(data: bytes) -> bytes:
    """A JPEG whose header parses but that no decoder accepts (sampling factors 0 in the SOF)."""
    b = bytearray(data)
    sof = b.find(b"\xff\xc0")
    b[sof + 11] = 0x00
    return bytes(b)


def make_photo_folder(root, corrupt: bool = False):
    """Real photos as JPEGs of different sizes and kinds, one PNG; with ``corrupt``, a truncated
    JPEG and one that only fails when decoded. Returns {name: expected route}."""
    root.mkdir(parents=True, exist_ok=True)
    astro, chelsea, coffee = skdata.astronaut(), skdata.chelsea(), skdata.coffee()
    files = {
        "a_astronaut.jpg": (jpeg_bytes(resized(astro, 96, 96), quality=90), "device"),
        "b_chelsea.jpg": (jpeg_bytes(resized(chelsea, 151, 100), quality=75), "device"),
        "c_coffee.jpg": (jpeg_bytes(resized(coffee, 120, 80), quality=95, subsampling=0), "device"),
        "d_coffee_progressive.jpg": (jpeg_bytes(resized(coffee, 90, 130), quality=85, progressive=True),
                                     "device"),
        "e_astronaut_grey.jpg": (jpeg_bytes(resized(astro, 110, 70), mode="L"), "device"),
        "f_chelsea_cmyk.jpg": (jpeg_bytes(resized(chelsea, 100, 77), mode="CMYK"), "worker"),
        "h_astronaut_big.jpg": (jpeg_bytes(resized(astro, 200, 170), quality=80), "device"),
    }
    buf = io.BytesIO()
    Image.fromarray(resized(coffee, 88, 72)).save(buf, "PNG")
    files["g_coffee.png"] = (buf.getvalue(), "worker")
    if corrupt:
        good = jpeg_bytes(resized(chelsea, 140, 90))
        files["i_truncated.jpg"] = (good[: len(good) // 2], "bad")
        files["j_bogus.jpg"] = (bogus_sampling(good), "device-bad")
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    return {name: route for name, (_, route) in files.items()}


def loader_for(root, decode, workers, batch, *extra):
    cfg = resolve_config(PRETRAIN, None, [
        "model.img_size=64", "mask.min_num_patches=2", "data.source=folder", f"data.root={root}",
        f"data.decode={decode}", f"data.num_workers={workers}", f"train.batch_size={batch}",
        "data.scale=[0.2,1.0]", "train.seed=3", *extra])
    dataset = build_pretrain_dataset(cfg)
    return build_pretrain_loader(dataset, cfg, 0, 1, CPU)


def epochs_of(loader, epochs):
    batches = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        batches += list(loader)
    return batches


def test_jpeg_header_routes_files(tmp_path):
    routes = make_photo_folder(tmp_path, corrupt=True)
    for name, route in routes.items():
        data = (tmp_path / name).read_bytes()
        size = device_jpeg_info(data)
        assert (size is not None) == route.startswith("device"), name
        if size is not None and route == "device":
            with Image.open(tmp_path / name) as im:
                assert size == (im.height, im.width, 1), name
    assert jpeg_header((tmp_path / "f_chelsea_cmyk.jpg").read_bytes())[2] == 4
    # an EXIF thumbnail's end marker before the first scan does not make a truncated file look whole
    full = (tmp_path / "a_astronaut.jpg").read_bytes()
    thumb = jpeg_bytes(resized(skdata.astronaut(), 8, 8))
    payload = b"Exif\0\0" + thumb
    with_thumb = full[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + full[2:]
    assert device_jpeg_info(with_thumb) == (96, 96, 1)          # not TIFF data: orientation 1
    assert device_jpeg_info(with_thumb[: len(with_thumb) * 3 // 4]) is None
    assert device_jpeg_info(b"") is None and device_jpeg_info(b"\xff\xd8\xff") is None


def test_draw_crop_is_seeded_and_apply_crop_matches_shapes():
    a = draw_crop(0, 1, 5, 300, 451, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
    assert a == draw_crop(0, 1, 5, 300, 451, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
    assert a != draw_crop(0, 2, 5, 300, 451, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
    top, left, h, w, flip = a
    assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 451 and isinstance(flip, bool)
    state = torch.get_rng_state()
    draw_crop(0, 0, 0, 10, 10, (0.5, 1.0), (1.0, 1.0), 0.5)
    assert torch.equal(state, torch.get_rng_state())           # the global stream is untouched
    img = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1).contiguous()
    out = apply_crop(img, (top, left, h, w), True, 32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert torch.equal(out, apply_crop(img, (top, left, h, w), False, 32).flip(-1))


@pytest.mark.parametrize("workers", [0, 2])
def test_device_path_equals_cpu_path_through_the_dataloader(tmp_path, workers):
    routes = make_photo_folder(tmp_path / "imgs")
    cpu = epochs_of(loader_for(tmp_path / "imgs", "cpu", workers, 4), 2)
    dev_loader = loader_for(tmp_path / "imgs", "device", workers, 4)
    assert isinstance(dev_loader, DeviceDecodedLoader)
    dev = epochs_of(dev_loader, 2)
    assert len(cpu) == len(dev) == 4                    # 8 files, batch 4, 2 epochs
    for c, d in zip(cpu, dev):
        assert d["images"].shape == (4, 3, 64, 64) and d["images"].dtype == torch.uint8
        # measured: identical (max |difference| 0 uint8 levels): the same libjpeg on the CPU, the same crops
        assert (c["images"].int() - d["images"].int()).abs().max().item() == 0
        assert torch.equal(c["mask"], d["mask"])
        assert c["bad"].tolist() == d["bad"].tolist() == [0] * 4
    stats = dev_loader.decoder.stats
    per_epoch = sum(r == "device" for r in routes.values()), sum(r == "worker" for r in routes.values())
    assert (stats["device"], stats["worker_cpu"]) == (2 * per_epoch[0], 2 * per_epoch[1])
    assert stats["failed"] == stats["cpu_fallback"] == 0


def test_corrupt_jpegs_are_counted_and_batches_stay_full(tmp_path):
    make_photo_folder(tmp_path / "imgs", corrupt=True)           # 10 files: 8 good, then 2 corrupt (8, 9)
    batch = 5
    dev_loader = loader_for(tmp_path / "imgs", "device", 0, batch)
    dev = epochs_of(dev_loader, 1)
    cpu = epochs_of(loader_for(tmp_path / "imgs", "cpu", 0, batch), 1)
    assert len(dev) == len(cpu) == 2
    assert all(b["images"].shape == (batch, 3, 64, 64) for b in dev)
    named = "\n".join(line for b in dev for line in b["bad_paths"])
    # sample 8 skips i_truncated (and, on the CPU path, j_bogus after it); sample 9 skips j_bogus:
    # each bad sample is counted once (a bad neighbour met in a skip chain counts when it is drawn itself)
    assert sum(int(b["bad"].sum()) for b in dev) == 2 == sum(int(b["bad"].sum()) for b in cpu)
    assert "i_truncated.jpg" in named and "j_bogus.jpg" in named
    assert dev_loader.decoder.stats["failed"] == 2              # j_bogus (twice): caught on the device side
    # the truncated file is skipped by the worker exactly as in the CPU path (the next file is read);
    # the two samples that reached j_bogus hold copies of other images of their batch, the rest are identical
    flat_dev = torch.cat([b["images"] for b in dev])
    flat_cpu = torch.cat([b["images"] for b in cpu])
    bogus_at = [k for k, line in enumerate(sum((b["bad_paths"] for b in dev), [])) if "j_bogus" in line]
    same = [k for k in range(len(flat_dev)) if k not in bogus_at]
    assert len(same) == 2 * batch - 2 and torch.equal(flat_dev[same], flat_cpu[same])
    for k in bogus_at:
        assert any(torch.equal(flat_dev[k], flat_dev[j]) for j in range(len(flat_dev)) if j != k)  # a copy


def test_pretrain_step_decodes_a_raw_encoded_batch(tmp_path):
    from maskfeat.tasks.steps import PretrainStep

    make_photo_folder(tmp_path / "imgs")
    dev_loader = loader_for(tmp_path / "imgs", "device", 0, 4)
    dev_loader.sampler.set_epoch(0)
    raw = next(iter(dev_loader.loader))                        # the DataLoader's own, still encoded
    assert "jpeg" in raw and "images" not in raw and raw["decoded"].shape[1:] == (3, 64, 64)
    decoded = next(iter(dev_loader))
    step = PretrainStep(PRETRAIN["data"]["mean"], PRETRAIN["data"]["std"], CPU, decoder=dev_loader.decoder)
    assert torch.equal(step.decode(raw), decoded["images"])
    assert step.decode(decoded) is decoded["images"]


def test_unsupported_torchcodec_and_sources_are_one_line_errors(tmp_path, monkeypatch):
    make_photo_folder(tmp_path / "imgs")

    def old_decode_jpeg(input, mode=None, device=None):
        raise TypeError("decode_jpeg(): argument 'input' must be Tensor, not list")

    monkeypatch.setattr(device_decode, "decode_jpeg", old_decode_jpeg)
    refused = r"^data\.decode=device: torchcodec .* cannot decode a batch of JPEGs"
    with pytest.raises(UserError, match=refused) as e:
        loader_for(tmp_path / "imgs", "device", 0, 4)
    assert "\n" not in str(e.value) and "data.decode=cpu" in str(e.value)
    monkeypatch.undo()
    with pytest.raises(UserError, match="data.decode: unknown value 'gpu'"):
        loader_for(tmp_path / "imgs", "gpu", 0, 4)
    cfg = resolve_config(PRETRAIN, None, ["data.source=fashion-mnist", "data.decode=device"])
    with pytest.raises(UserError, match="data.decode=device: only for image files"):
        build_pretrain_dataset(cfg)


def test_cli_pretrain_with_device_decode_on_cpu(tmp_path):
    root = tmp_path / "imgs"
    make_photo_folder(root / "one", corrupt=True)
    make_photo_folder(root / "two")                               # class sub-folders: 18 files
    out = tmp_path / "run"
    args = tiny_pretrain_overrides(out, **{"data.source": "folder", "data.root": str(root),
                                           "data.decode": "device", "train.batch_size": 8})
    r = subprocess.run([sys.executable, "-m", "maskfeat", "pretrain", *args], capture_output=True, text=True,
                       env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in records] == [1, 2, 3, 4]       # 18 files // 8 = 2 steps x 2 epochs
    assert all(np.isfinite(rec["loss"]) for rec in records)
    # the worker's skip (truncated) and the device-side failure (bogus) both reach the run's count and log
    # every draw of a bad file counts once (2 bad files, drawn once an epoch): seeded, exact
    assert [rec["bad_images"] for rec in records] == [2, 2, 3, 4]
    assert "i_truncated.jpg" in r.stderr
    assert "j_bogus.jpg (undecodable: decode_jpeg on cpu: Bogus sampling" in r.stderr
