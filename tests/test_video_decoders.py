"""torchcodec against PyAV: the same frames chosen and the same pixels; PyAV as the fallback;
the data.video_decoder / data.decode keys; the loader benchmark at a tiny size. (Bad files are
skipped and counted with either decoder: test_video_data.)"""
import json
import sys
import warnings

import av  # noqa: F401  (PyAV writes the test videos: a test dependency, never skipped)
import numpy as np
import pytest
import torch

from helpers import load_bench  # noqa: E402
from helpers.video import bar_row, video_cfg, write_video  # noqa: E402
from maskfeat.config import ConfigError  # noqa: E402
from maskfeat.data import video_clips as C  # noqa: E402
from maskfeat.data import video_decoders as D  # noqa: E402
from maskfeat.data.loader import build_loader  # noqa: E402
from maskfeat.data.video_annotations import embedded_videos  # noqa: E402
from maskfeat.data.video_datasets import VideoReader  # noqa: E402
from maskfeat.data.video_loader import build_video_pretrain_dataset  # noqa: E402
from maskfeat.schema import VIDEO_PRETRAIN  # noqa: E402

TORCHCODEC = D.torchcodec_available()      # '' when torchcodec and FFmpeg's libraries load
needs_torchcodec = pytest.mark.usefixtures("torchcodec")     # skips outside CI, fails in CI


class Recorder:
    """A clip chooser (16 x 4 at a seeded random start) that records the counts it is given."""

    def __init__(self, seed: int, num_frames: int = 16, rate: int = 4):
        self.rng, self.seen, self.num_frames, self.rate = np.random.default_rng(seed), [], num_frames, rate

    def __call__(self, n: int) -> np.ndarray:
        self.seen.append(n)
        return C.train_indices(n, self.num_frames, self.rate, self.rng)


def read_both(path, seed: int, short_side: int = 0, **kw):
    """read_clip with each decoder -> {name: (frames, counts its chooser saw)}."""
    out = {}
    for name in ("pyav", "torchcodec"):
        rec = Recorder(seed, **kw)
        out[name] = (C.read_clip(path, rec, short_side, name), rec.seen)
    return out


@needs_torchcodec
@pytest.mark.parametrize("clip", ["bigbuckbunny", "bikes", "carphone_distorted", "carphone_pristine"])
def test_bundled_clips_same_frames_as_pyav(clip):
    path = next(p for p in embedded_videos() if p.stem == clip)
    assert C.count_frames(path, "torchcodec") == C.count_frames(path, "pyav") > 0
    got = read_both(path, seed=3)
    (ref, seen_ref), (tc, seen_tc) = got["pyav"], got["torchcodec"]
    assert seen_tc == seen_ref and len(seen_ref) == 1          # same count -> same 16 indices
    assert tc.shape == ref.shape and tc.shape[:2] == (16, 3) and tc.dtype == torch.uint8
    assert torch.equal(tc, ref)                                 # full size: bitwise (measured: max 0)
    # decode_short_side: PyAV resizes in YUV inside swscale, torchcodec resizes RGB afterwards
    # (antialiased bilinear): measured mean |diff| 0.9-1.5, > 8 levels on <= 1.3% of pixels
    # (sharp colour edges; max 59), at short sides 128 and 256
    small = read_both(path, seed=3, short_side=128)
    a, b = small["pyav"][0], small["torchcodec"][0]
    assert a.shape == b.shape and min(a.shape[-2:]) == 128
    diff = (a.int() - b.int()).abs().float()
    assert 0.3 < diff.mean().item() < 1.6, diff.mean().item()
    assert (diff > 8).float().mean().item() < 0.02
    assert torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1] > 0.99


@needs_torchcodec
@pytest.mark.parametrize("ext,codec", [("mkv", "mpeg4"), ("webm", "libvpx-vp9"), ("mkv", "libx264")])
def test_truncated_video_same_retry_and_frames(tmp_path, ext, codec):
    """The header promises 40 frames, the cut file holds fewer: both decoders fail on the first
    choice, choose again from the frames they really decoded, and read the same frames."""
    whole = write_video(tmp_path / f"v.{ext}", 40, codec=codec)
    cut = tmp_path / f"cut.{ext}"
    data = whole.read_bytes()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    for path, retried in ((whole, False), (cut, True)):
        got = read_both(path, seed=1, num_frames=8, rate=4)
        (ref, seen_ref), (tc, seen_tc) = got["pyav"], got["torchcodec"]
        assert seen_tc == seen_ref and seen_ref[0] == 40 and (len(seen_ref) == 2) == retried
        assert torch.equal(tc, ref)
        if retried:   # clamped to the last decodable frame
            assert [bar_row(f) // 2 for f in tc][-1] == (seen_ref[1] - 1) % 24


@needs_torchcodec
def test_decode_duplicates_order_and_end_of_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", 20)
    frames = C.decode(path, [7, 0, 7, 19], decoder="torchcodec")
    assert [bar_row(f) for f in frames] == [14, 0, 14, 38]
    assert torch.equal(frames, C.decode(path, [7, 0, 7, 19], decoder="pyav"))
    long = write_video(tmp_path / "long.mp4", 70)
    whole = C.decode(long, decoder="torchcodec")                          # decoded 32 frames at a time
    assert whole.shape == (70, 3, 48, 64) and torch.equal(whole, C.decode(long, decoder="pyav"))
    assert C.decode(long, decoder="torchcodec", short_side=24).shape == (70, 3, 24, 32)
    with pytest.raises(C.VideoError, match="ends at frame 19, frame 25 was wanted"):
        C.decode(path, [3, 25], decoder="torchcodec")


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(D, "_warned", set())


def test_missing_torchcodec_is_reported_not_raised(monkeypatch):
    D.torchcodec_available.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)          # as if not installed
    try:
        assert "torchcodec.decoders" in D.torchcodec_available()
    finally:
        D.torchcodec_available.cache_clear()


def test_no_torchcodec_falls_back_to_pyav_with_one_warning(tmp_path, monkeypatch, fresh_warnings):
    monkeypatch.setattr(D, "torchcodec_available", lambda: "libavcodec.so.59: cannot open shared object file")
    paths = [write_video(tmp_path / f"v{i}.mp4", 30, seed=i) for i in range(2)]
    reader = VideoReader(paths, decoder="torchcodec")
    ref = VideoReader(paths, decoder="pyav")
    with pytest.warns(UserWarning,
                      match="torchcodec unavailable .*libavcodec.so.59.*decoding videos with PyAV"):
        got = [reader.read(i, Recorder(i, 8, 3)) for i in (0, 1)]
    assert all(torch.equal(g, ref.read(i, Recorder(i, 8, 3))) for i, g in enumerate(got))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # once per process, not once per file
        reader.read(1, Recorder(5, 8, 3))


@needs_torchcodec
def test_file_torchcodec_cannot_open_or_decode_goes_to_pyav(tmp_path, monkeypatch, fresh_warnings):
    import torchcodec.decoders

    good, refused, failing = (write_video(tmp_path / f"{n}.mp4", 30, seed=i)
                              for i, n in enumerate(("good", "refused", "failing")))
    real = torchcodec.decoders.VideoDecoder

    class Flaky(real):
        def __init__(self, source, **kw):
            if str(source).endswith("refused.mp4"):
                raise RuntimeError("SingleStreamDecoder, /src/x.cpp:41, Could not open input file")
            super().__init__(source, **kw)

        def get_frames_at(self, indices):
            if "failing" in self._source_name:
                raise RuntimeError("Could not push packet to decoder: Invalid data")
            return super().get_frames_at(indices)

    def make(source, **kw):
        dec = Flaky(source, **kw)
        dec._source_name = str(source)
        return dec
    monkeypatch.setattr(torchcodec.decoders, "VideoDecoder", make)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in (good, refused, failing, refused):
            rec, ref = Recorder(7, 8, 3), Recorder(7, 8, 3)
            frames = C.read_clip(path, rec, decoder="torchcodec")
            # PyAV reads the clip PyAV alone would have chosen: the chooser drew once
            assert torch.equal(frames, C.read_clip(path, ref, decoder="pyav"))
            assert rec.seen == ref.seen == [30]
            assert rec.rng.random() == ref.rng.random()       # and left the random stream where PyAV does
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages                       # once per file
    assert "torchcodec cannot read" in messages[0]
    assert "refused.mp4 (Could not open input file)" in messages[0]
    assert "failing.mp4 (Could not push packet" in messages[1] and "decoding it with PyAV" in messages[1]


def test_config_keys_are_checked_with_one_line_errors(monkeypatch):
    data = dict(VIDEO_PRETRAIN["data"])
    assert (data["video_decoder"], data["decode"]) == ("torchcodec", "cpu")
    assert D.decoding_device(data) == "cpu"
    assert D.decoding_device(dict(data, video_decoder="pyav")) == "cpu"
    cases = [
        (dict(video_decoder="ffmpeg"),
         r"^data.video_decoder: unknown decoder 'ffmpeg'; choose torchcodec or pyav$"),
        (dict(decode="gpu"), r"^data.decode: unknown value 'gpu'; choose cpu or device$"),
        (dict(decode="device", video_decoder="pyav"),
         r"needs data.video_decoder=torchcodec \(pyav decodes on the CPU"),
        (dict(decode="device", num_workers=2), r"main process .* set data.num_workers=0 \(it is 2\)$"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            D.decoding_device(dict(data, **change))
    monkeypatch.setattr(D, "torchcodec_available", lambda: "No module named 'torchcodec'")
    with pytest.raises(ConfigError,
                       match="data.decode=device needs torchcodec: No module named 'torchcodec'"):
        D.decoding_device(dict(data, decode="device", num_workers=0))
    with pytest.raises(ValueError, match="decoder must be one of"):
        VideoReader([], decoder="decord")


def test_device_decoding_picks_the_training_gpu(tmp_path, monkeypatch):
    """What can run without a GPU: the device choice, the decoder receiving it, no pinning."""
    monkeypatch.setattr(D, "torchcodec_available", lambda: "")
    monkeypatch.setattr(D, "check_device_decoding", lambda device: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    data = dict(VIDEO_PRETRAIN["data"], decode="device", num_workers=0)
    assert D.decoding_device(data, "auto") == "cuda:1" == D.decoding_device(data, "cuda")
    assert D.decoding_device(data, "cpu") == "cpu"                   # train.device=cpu: decode there too
    assert D.decoding_device(dict(data, decode="cpu"), "cuda") == "cpu"
    opened = {}

    class Fake:
        def __init__(self, path, device):
            opened[str(path)] = device

        header_frames = 10

        def frames(self, indices, short_side):
            return torch.zeros((10 if indices is None else len(indices), 3, 4, 4), dtype=torch.uint8)

        def close(self):
            pass
    monkeypatch.setitem(D.DECODERS, "torchcodec", Fake)
    cfg = video_cfg(tmp_path, decode="device", samples_per_epoch=3)
    ds = build_video_pretrain_dataset(cfg)
    assert ds.device == "cuda:1" and ds.reader.device == "cuda:1"
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)          # no GPU to move to
    ds.reader.read(0, lambda n: np.arange(4))
    assert set(opened.values()) == {"cuda:1"}
    loader = build_loader(ds, 3, dict(cfg["data"], pin_memory=True), 0, 1, 0)
    assert loader.pin_memory is False and loader.num_workers == 0            # CUDA tensors are not pinned


@needs_torchcodec
def test_device_probe_decodes_or_names_the_device():
    D.check_device_decoding("cpu")               # a real encode (libx264) + decode of 2 frames
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^data.decode=device: torchcodec cannot decode on cuda:0: .*"
                                              r"; set data.decode=cpu$"):
            D.check_device_decoding("cuda:0")


def test_ffmpeg_threads_share_the_cores_among_workers(monkeypatch):
    import torch.utils.data as tud

    assert D.ffmpeg_threads() == 0                                    # main process: FFmpeg's choice
    monkeypatch.setattr(D.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for workers, local_world, threads in ((1, 1, 16), (4, 1, 4), (12, 1, 1), (32, 1, 1), (2, 4, 2),
                                          (12, 8, 1)):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))       # torchrun: processes on this machine
        monkeypatch.setattr(tud, "get_worker_info", lambda w=workers: type("I", (), {"num_workers": w}))
        assert D.ffmpeg_threads() == threads


def test_header_frame_count_rule_is_shared():
    assert D.frames_from_header(132, 5.28, 25.0, 5.3) == 132
    assert D.frames_from_header(0, None, 25.0, 1.48) == 37          # mkv / webm: container duration
    # 15 frames at 30000/1001 fps, time base 1/30000: PyAV's exact fraction and torchcodec's doubles
    # give 14.999999999999998 and 15.000000000000002 frames; both must count 15
    from fractions import Fraction
    pyav_seconds, tc_seconds = float(15 * 1001 * Fraction(1, 30000)), 15 * 1001 * (1 / 30000)
    assert D.frames_from_header(None, pyav_seconds, Fraction(30000, 1001), None) == 15
    assert D.frames_from_header(None, tc_seconds, 30000 / 1001, None) == 15
    assert D.frames_from_header(None, 1.4799, 25.0, None) == 36      # 36.9975: a frame short is short
    assert D.frames_from_header(None, None, 25.0, None) == 0


@needs_torchcodec
def test_data_throughput_bench_runs_at_a_tiny_size(tmp_path, capsys):
    bench = load_bench("data_throughput")
    out = tmp_path / "dt.json"
    rc = bench.main(["--workers", "0", "--rounds", "2", "--batches", "1", "--batch", "2", "--repeat", "4",
                     "--clips", "carphone_distorted", "--short-side", "0",
                     "--images", str(tmp_path / "jpegs"), "--make-data", "4", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["video pyav", "video torchcodec", "image folder", "image shards",
                                         "image shards pipe:cat"]
    for r in rows:
        assert r["rounds"] == 2 and r["min"] <= r["samples_per_s"] <= r["max"] and r["samples_per_s"] > 0
        assert r["pss_main_mib"] > 10 and r["worker_procs"] == 0 and r["cpu_ms_per_sample"] >= 0
    assert rows[1]["speedup"] == pytest.approx(rows[1]["samples_per_s"] / rows[0]["samples_per_s"])
    assert rows[3]["speedup"] == pytest.approx(rows[3]["samples_per_s"] / rows[2]["samples_per_s"])
    printed = capsys.readouterr().out
    assert "video torchcodec" in printed and "command: python bench/data_throughput.py --workers 0" in printed
