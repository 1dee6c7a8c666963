"""Run under torchrun: a tiny pre-training run; every rank saves its weights and, for each step it ran,
its own loss and the lr that step's optimizer update used, to rank<k>.pt."""
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
steps = {}                                      # step -> (this rank's loss, lr)
inner = trainer.step_fn


def recording_step(model, batch):
    loss = inner(model, batch)
    steps[trainer.state.step + 1] = (loss.item(), trainer.optimizer.param_groups[0]["lr"])
    return loss


trainer.step_fn = recording_step
state = trainer.fit()
torch.save({"model": trainer.model.state_dict(), "step": state.step, "steps": steps,
            "global_batch": trainer.global_batch}, out / f"rank{env.rank}.pt")
cleanup(env)
