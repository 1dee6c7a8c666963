"""Video MaskFeat: an MViTv2 or video-ViT encoder, a linear head and masked MSE on per-token HOG."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ConfigError
from ..models.build import choose
from ..models.decoder import MaskedDecoder, build_decoder
from ..models.maskfeat import MaskFeatOutput, masked_mse
from ..models.visible import predict_masked
from ..models.vit import drop_mask_token
from ..data.cube_mask import upsample_mask
from .hog3d import VideoHOG
from .mvit import MVIT_ARCHS, MViTEncoder
from .vit3d import MaskFeatViT3D, build_vit3d


class VideoMaskFeat(nn.Module):
    """``model(clips, mask) -> MaskFeatOutput``, the interface of the image ``MaskFeat``.

    clips (B, 3, T, H, W) normalised; mask (B, t, h, w) bool, True = masked, on any grid that
    divides both the encoder's patch grid and its output grid (the cube-mask grid, 8x7x7 for
    16x224x224, or the token grid itself). The encoder's final LayerNorm + ``head`` (Linear)
    predict the HOG of every output token; the loss averages over masked tokens only.
    """

    def __init__(self, encoder: nn.Module, target: VideoHOG, head_in: int | None = None):
        super().__init__()
        self.encoder, self.target = encoder, target
        self.head = nn.Linear(head_in or encoder.embed_dim, target.out_dim)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Read by timm's param-group builder: the mask token never decays."""
        return {"encoder.mask_token"}

    def targets(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-token HOG of the full clip, fp32, no grad: (B, N, D_t)."""
        with torch.autocast(clips.device.type, enabled=False):
            return self.target(clips)

    def check_grid(self, grid, clips: torch.Tensor) -> None:
        expected = self.target.grid(*clips.shape[2:])
        if tuple(grid) != expected:
            raise ValueError(f"encoder output grid {tuple(grid)} != HOG target grid {expected}; "
                             "check hog.temporal_stride and the encoder's strides")

    def forward(self, clips: torch.Tensor, mask: torch.Tensor,
                return_outputs: bool = False) -> MaskFeatOutput:
        # 1. targets from the full clip, fp32, no grad
        target = self.targets(clips)                                      # (B, N, D_t)
        # 2. encoder with masked patch embeddings replaced by the mask token
        tokens, grid = self.encoder.forward_tokens(clips, mask)           # (B, prefix + N, C)
        tokens = tokens[:, self.encoder.num_prefix_tokens:]               # (B, N, C)
        self.check_grid(grid, clips)
        token_mask = upsample_mask(mask.bool(), grid).flatten(1)          # (B, N)
        # 3. linear head, 4. MSE on masked tokens only
        pred = self.head(tokens)                                          # (B, N, D_t)
        loss = masked_mse(pred, target, token_mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, token_mask)
        return MaskFeatOutput(loss)


class VisibleVideoMaskFeat(VideoMaskFeat):
    """The video ViT seeing only the visible tubelets; a light decoder predicts the masked ones
    (``model.encoder: visible``, see ``maskfeat.models.visible``). The cube mask must mask the
    same number of units in every clip (the loader makes it exact in this mode)."""

    def __init__(self, encoder: MaskFeatViT3D, target: VideoHOG, decoder: MaskedDecoder):
        super().__init__(drop_mask_token(encoder), target, head_in=decoder.dim)
        self.decoder = decoder

    def no_weight_decay(self) -> set[str]:
        return {"decoder.mask_token"}

    def forward(self, clips: torch.Tensor, mask: torch.Tensor,
                return_outputs: bool = False) -> MaskFeatOutput:
        # 1. targets from the full clip, fp32, no grad
        target = self.targets(clips)                                      # (B, N, D_t)
        # 2. the cube mask on the token grid
        grid = self.encoder.patch_embed.grid_size                         # (T', H', W')
        self.check_grid(grid, clips)
        token_mask = upsample_mask(mask.bool(), grid).flatten(1)          # (B, N)
        # 3. visible tubelets -> encoder -> decoder with mask tokens -> head
        pred = predict_masked(self, clips, token_mask)                    # (B, N, D_t)
        # 4. MSE on masked tokens only
        loss = masked_mse(pred, target, token_mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, token_mask)
        return MaskFeatOutput(loss)


def build_video_encoder(model: dict, pretrain: bool = True, num_classes: int = 0) -> nn.Module:
    """From a config's ``model`` section: MViTv2 ('mvitv2-*') or tubelet ViT ('vit3d-*')."""
    arch = model["arch"]
    if arch in MVIT_ARCHS:
        return MViTEncoder(arch, spatial_size=model["img_size"], temporal_size=model["num_frames"],
                           pretrain=pretrain, num_classes=num_classes, dropout=model.get("dropout", 0.0),
                           drop_path_rate=model["drop_path_rate"], head_pool=model.get("head_pool", "cls"))
    if arch.startswith("vit3d-"):
        extra = {} if pretrain else dict(num_classes=num_classes, global_pool=model.get("global_pool", "avg"),
                                         drop_rate=model.get("dropout", 0.0), with_mask_token=False)
        return build_vit3d(arch, img_size=model["img_size"], num_frames=model["num_frames"],
                           tubelet_size=model["tubelet_size"], patch_size=model["patch_size"],
                           drop_path_rate=model["drop_path_rate"], **extra)
    choices = sorted(MVIT_ARCHS) + ["vit3d-<vit arch>, e.g. vit3d-base"]
    raise ValueError(f"model.arch: unknown video architecture {arch!r}; choose one of {choices}")


def _visible_video(encoder: nn.Module, target: VideoHOG, model: dict) -> VisibleVideoMaskFeat:
    if not isinstance(encoder, MaskFeatViT3D):
        raise ConfigError(f"model.encoder: visible needs a video ViT (model.arch vit3d-*); {model['arch']} "
                          "runs every token (MViT pools over the full token grid): use model.encoder=full")
    return VisibleVideoMaskFeat(encoder, target, build_decoder(model, encoder))


# model.encoder -> (encoder, target, model config) -> video pre-training model
VIDEO_MODELS = {
    "full": lambda encoder, target, model: VideoMaskFeat(encoder, target),
    "visible": _visible_video,
}


def build_video_model(cfg: dict) -> VideoMaskFeat:
    """Pre-training model from the ``model`` and ``hog`` sections of a VIDEO_PRETRAIN config."""
    h = cfg["hog"]
    make = choose(VIDEO_MODELS, cfg["model"])
    target = VideoHOG(temporal_stride=h["temporal_stride"], nbins=h["nbins"], cell_size=h["cell_size"],
                      patch_size=h["patch_size"], gaussian_window=h["gaussian_window"])
    return make(build_video_encoder(cfg["model"], pretrain=True), target, cfg["model"])
