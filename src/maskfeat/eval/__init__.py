"""Evaluation of pre-trained features: fine-tuning classifier, linear probe, k-NN, metrics."""
from .classifier import (
           ClassificationStep,
           LinearProbe,
           Pooled,
           ProbeHead,
           build_classifier,
)
from .knn import extract_features, knn_accuracy, knn_scores
from .metrics import evaluate, topk_correct
from .pretrained import load_encoder_into, read_pretrained

__all__ = ["ClassificationStep", "LinearProbe", "Pooled", "ProbeHead", "build_classifier", "extract_features",
           "knn_accuracy", "knn_scores", "evaluate", "topk_correct", "load_encoder_into", "read_pretrained"]
