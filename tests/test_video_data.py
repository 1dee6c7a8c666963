"""Video decoding, clip sampling, Kinetics-style annotations and the clip datasets."""
import warnings

import av
import numpy as np
import pytest
import torch

from helpers.video import bad_video_folder, bar_row, video_cfg, write_video  # noqa: E402  # noqa: E402
from maskfeat.data import video_clips as C  # noqa: E402
from maskfeat.data.video_annotations import embedded_videos, read_annotations  # noqa: E402
from maskfeat.data.video_datasets import VideoClassifyDataset, VideoReader  # noqa: E402
from maskfeat.data.video_loader import build_video_loader, build_video_pretrain_dataset  # noqa: E402
from maskfeat.errors import UserError  # noqa: E402


def test_embedded_clips_are_scikit_videos_mp4s():
    paths = embedded_videos()
    assert [p.name for p in paths] == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4",
                                       "carphone_pristine.mp4"]
    assert C.count_frames(paths[1]) == 250


def test_decode_picks_the_asked_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 20)
    frames = C.decode(path, [0, 5, 5, 19])
    assert frames.shape == (4, 3, 48, 64) and frames.dtype == torch.uint8
    assert [bar_row(f) for f in frames] == [0, 10, 10, 38]
    # same pixels as PyAV's own PIL conversion of those frames
    with av.open(str(path)) as c:
        ref = [np.asarray(f.to_image()) for f in c.decode(video=0)]
    np.testing.assert_array_equal(frames[1].permute(1, 2, 0).numpy(), ref[5])
    small = C.decode(path, [3], short_side=24)
    assert small.shape == (1, 3, 24, 32)
    with pytest.raises(C.VideoError, match="ends at frame 19"):
        C.decode(path, [25])


def test_clip_indices_hand_computed():
    rng = np.random.default_rng(0)
    assert C.max_start(100, 16, 4) == 39                         # span 61 frames
    starts = {int(C.train_indices(100, 16, 4, rng)[0]) for _ in range(2000)}
    assert starts == set(range(40))                              # uniform over every start, inclusive
    np.testing.assert_array_equal(C.view_indices(100, 16, 4, 0, 10), np.arange(0, 64, 4))
    np.testing.assert_array_equal(C.view_indices(100, 16, 4, 9, 10), np.arange(39, 100, 4))
    np.testing.assert_array_equal(C.view_indices(100, 16, 4, 0, 1), np.arange(20, 84, 4))  # centred
    short = C.view_indices(40, 16, 4, 3, 10)                     # shorter than the span: clamped
    np.testing.assert_array_equal(short, np.minimum(np.arange(0, 64, 4), 39))
    with pytest.raises(C.VideoError, match="too short"):
        C.train_indices(10, 16, 4, rng)


def test_list_and_kinetics_csv_annotations(tmp_path):
    (tmp_path / "abseiling").mkdir()
    write_video(tmp_path / "abseiling" / "xyz_000010_000020.mp4", 4)
    (tmp_path / "air_drumming").mkdir()
    write_video(tmp_path / "air_drumming" / "k9_000000_000010.mp4", 4)
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "abseiling,xyz,10,20,train\nair drumming,k9,0,10,train\nabseiling,gone,0,10,train\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        paths, labels, classes = read_annotations(tmp_path, "train.csv")
    message = str(w[0].message)
    assert "data.ann_file: 1 of the 3 videos listed in" in message and "are missing" in message
    assert [p.name for p in paths] == ["xyz_000010_000020.mp4", "k9_000000_000010.mp4"]
    assert classes == ["abseiling", "air drumming"] and labels == [0, 1]
    (tmp_path / "list.txt").write_text("abseiling/xyz_000010_000020.mp4 3\n"
                                       "air_drumming/k9_000000_000010.mp4 7\n")
    paths, labels, classes = read_annotations(tmp_path, "list.txt")
    assert labels == [3, 7] and classes == [] and paths[1].parent.name == "air_drumming"
    with pytest.raises(UserError, match="not found"):
        read_annotations(tmp_path, "nope.txt")


@pytest.mark.parametrize("decoder", ["torchcodec", "pyav"])
def test_unreadable_and_short_videos_are_skipped_and_counted(tmp_path, decoder, request):
    if decoder == "torchcodec":
        request.getfixturevalue("torchcodec")
    cfg = bad_video_folder(tmp_path, decoder)
    ds = build_video_pretrain_dataset(cfg)
    assert ds.reader.decoder == decoder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torchcodec: 'cannot read broken.mp4 (...); decoding it with PyAV'
        item = ds[(0, 0)]
    bad = item["bad_paths"].splitlines()
    assert item["bad"] == 1 and "short.mp4 (too short: 5 frames" in bad[0]         # its own index only
    assert "broken.mp4 (cannot open video" in bad[1] and "empty.mp4 (cannot open video" in bad[2]
    assert item["images"].shape == (3, 8, 32, 32) and item["mask"].shape == (4, 2, 2)
    assert ds[(3, 0)]["bad"] == 0
    # all bad -> one clear error
    (tmp_path / "bad.txt").write_text("short.mp4 0\nbroken.mp4 1\n")
    cfg = video_cfg(tmp_path, source="kinetics", root=str(tmp_path), ann_file="bad.txt",
                    video_decoder=decoder)
    with pytest.raises(UserError, match="unreadable or too short"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_video_pretrain_dataset(cfg)[(0, 0)]


def test_pretrain_items_are_seeded_per_sample_and_batched(tmp_path):
    cfg = video_cfg(tmp_path, samples_per_epoch=6, decode_short_side=48)
    ds = build_video_pretrain_dataset(cfg)
    a, b, c = ds[(4, 1)], ds[(4, 1)], ds[(4, 2)]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["images"], c["images"])
    assert a["mask"].float().mean().item() == pytest.approx(0.4, abs=0.1)
    loader = build_video_loader(cfg)
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    assert batch["images"].shape == (3, 3, 8, 32, 32) and batch["images"].dtype == torch.uint8
    assert batch["mask"].shape == (3, 4, 2, 2) and batch["mask"].dtype == torch.bool
    assert batch["bad"].tolist() == [0, 0, 0]


def test_test_views_cover_the_video_in_order(tmp_path):
    path = write_video(tmp_path / "v.mp4", 40, h=48, w=64)
    reader = VideoReader([path])
    ds = VideoClassifyDataset(reader, [1], num_frames=4, rate=2, size=32, temporal_views=3, spatial_views=3)
    assert len(ds) == 9
    items = [ds[k] for k in range(9)]
    assert {it["video"] for it in items} == {0} and {it["label"] for it in items} == {1}
    first_rows = [bar_row(it["images"][:, 0]) for it in items[::3]]     # temporal views 0, 1, 2
    # frames 0, 16, 33 (max start 33) -> bar rows 0, 32, 66 on 48 px, resized 48 -> 32: x 2/3
    assert first_rows == [0, round(32 * 2 / 3), round((66 % 48) * 2 / 3)]
    left, centre, right = (items[k]["images"] for k in range(3))
    assert left.shape == (3, 4, 32, 32)
    full = C.decode(path, [0, 2, 4, 6])
    resized = torch.nn.functional.interpolate(full.float(), size=(32, 43), mode="bilinear", antialias=True)
    assert (left.float() - resized[..., :32].permute(1, 0, 2, 3)).abs().mean() < 2
    assert (right.float() - resized[..., -32:].permute(1, 0, 2, 3)).abs().mean() < 2
