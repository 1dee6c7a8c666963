"""Test videos: PyAV-written clips whose frames can be told apart, and a small video config."""
import av
import numpy as np
import torch

from maskfeat.schema import VIDEO_PRETRAIN


def write_video(path, n_frames: int, h: int = 48, w: int = 64, seed: int = 0, codec: str = "mpeg4"):
    """A video (mpeg4 in .mp4 unless told) whose frame k shows a bright bar at row 2k mod h (so
    frames are identifiable)."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"qscale": "1"}
        for k in range(n_frames):
            img = (rng.random((h, w, 3)) * 40).astype(np.uint8)
            img[(2 * k) % h] = 255
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def bar_row(frame: torch.Tensor) -> int:
    return int(frame.float().mean(dim=(0, 2)).argmax())          # (3, H, W) -> brightest row


def video_cfg(tmp_path, **data):
    """A video pre-training config: 8 frames at 32 px, 2 x 16 x 16 mask units, batch 3 (``data``: data
    keys)."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VIDEO_PRETRAIN.items()}
    cfg["model"].update(num_frames=8, img_size=32)
    cfg["mask"].update(unit_size=[2, 16, 16], min_num_patches=1)
    cfg["data"].update(dict(num_workers=0, sampling_rate=2, decode_short_side=0), **data)
    cfg["train"].update(batch_size=3, seed=5)
    return cfg


def bad_video_folder(tmp_path, decoder: str) -> dict:
    """A 'path label' list of one short, one broken, one empty and one good video (in that order) and the
    video pre-training config that reads it with ``decoder``."""
    write_video(tmp_path / "good.mp4", 30)
    write_video(tmp_path / "short.mp4", 5)
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "ann.txt").write_text("short.mp4 0\nbroken.mp4 1\nempty.mp4 1\ngood.mp4 2\n")
    return video_cfg(tmp_path, source="kinetics", root=str(tmp_path), ann_file="ann.txt",
                     video_decoder=decoder)
