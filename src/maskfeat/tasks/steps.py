"""Training steps of the pre-training tasks: a uint8 batch in, normalised on the device, a loss out."""
from __future__ import annotations

import torch


class Normalise:
    """uint8 (B, 3, [T,] H, W) -> float32 ``(x - 255 mean) / (255 std)`` on ``device``.

    The constants are scaled in float64, then cast: 255 x 0.224 gives float32(57.12), the very
    divisor mmpretrain's preprocessor holds, so the same uint8 batch gives its inputs bit for bit
    (a float32 product is one ulp off, enough to flip a HOG bin in a flat region).
    """

    def __init__(self, mean, std, device: torch.device):
        shape = (1, -1, 1, 1)
        self.mean = (torch.tensor(mean, dtype=torch.float64) * 255.0).float().view(shape).to(device)
        self.std = (torch.tensor(std, dtype=torch.float64) * 255.0).float().view(shape).to(device)
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float()            # (B, 3, [T,] H, W)
        extra = x.dim() - self.mean.dim()
        mean, std = (self.mean, self.std) if not extra else (self.mean[..., None], self.std[..., None])
        return (x - mean) / std


class PretrainStep:
    """Moves a uint8 batch to the device, normalises it there and returns the MaskFeat loss.

    ``decoder`` (data.decode=device, a ``DeviceDecoder``) decodes a batch that still carries JPEG
    bytes; ``build_pretrain_loader`` normally hands over batches already decoded (so that the
    trainer counts files that fail on the device), and then ``decode`` only returns 'images'.
    """

    def __init__(self, mean, std, device: torch.device, decoder=None):
        self.normalise = Normalise(mean, std, device)
        self.device, self.decoder = device, decoder

    def decode(self, batch: dict) -> torch.Tensor:
        """The batch's uint8 images (B, 3, [T,] H, W), decoded on the device if it carries JPEG bytes."""
        if "jpeg" in batch:
            if self.decoder is None:
                raise ValueError("PretrainStep: a batch of JPEG bytes (data.decode=device) but no decoder")
            with torch.autocast(self.device.type, enabled=False):
                return self.decoder(batch)["images"]
        return batch["images"]

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = self.normalise(self.decode(batch))
        mask = batch["mask"].to(self.device, non_blocking=True)
        return model(x, mask).loss
