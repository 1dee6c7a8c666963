"""``maskfeat knn``: weighted k-NN top-1 / top-5 of frozen features (cosine, k=20, T=0.07)."""
from .common import task_command

add_arguments, run = task_command("knn", "Fashion-MNIST; give model.pretrained=<checkpoint>")
