"""``maskfeat linprobe``: linear probe (BatchNorm + Linear) on frozen features, LARS or SGD."""
from .common import task_command

add_arguments, run = task_command("linprobe", "Fashion-MNIST; give model.pretrained=<checkpoint>")
