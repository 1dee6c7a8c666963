"""Our own checkpoints' names: which weights of a pre-training state_dict are not the encoder's."""
from __future__ import annotations


def pretraining_only(state_dict: dict) -> dict[str, int]:
    """The weights of a MaskFeat state_dict that are not the encoder's, by top-level module
    (``head``; ``decoder`` of a model.encoder=visible run): {name: tensor count}."""
    counts: dict[str, int] = {}
    for k in state_dict:
        if "." in k and not k.startswith("encoder."):
            name = k.split(".", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


def dropped_note(counts: dict[str, int]) -> str:
    """'dropped: head (2 tensors), decoder (26 tensors) (decoder weights dropped, as the head)', or ''."""
    if not counts:
        return ""
    note = "dropped: " + ", ".join(f"{k} ({n} tensors)" for k, n in counts.items())
    return note + (" (decoder weights dropped, as the head)" if "decoder" in counts else "")
