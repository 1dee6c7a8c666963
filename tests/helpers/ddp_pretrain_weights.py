"""Run under torchrun: a tiny pre-training run, then every rank saves its own weights."""
import sys
from pathlib import Path

import torch

from maskfeat.engine.distributed import cleanup, init_distributed
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer

out = Path(sys.argv[1])
cfg = build_config(None, sys.argv[2:])
env = init_distributed("cpu")
trainer = build_trainer(cfg, env)
state = trainer.fit()
torch.save({"model": trainer.model.state_dict(), "step": state.step}, out / f"rank{env.rank}.pt")
cleanup(env)
