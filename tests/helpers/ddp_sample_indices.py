"""Run under torchrun: a tiny pre-training run; every rank writes the sample indices of each of
its batches, with the epoch, to rank<k>.json."""
import json
import sys
from pathlib import Path

from maskfeat.engine.distributed import cleanup, init_distributed
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer

out = Path(sys.argv[1])
cfg = build_config(None, sys.argv[2:])
env = init_distributed("cpu")
trainer = build_trainer(cfg, env)
seen = []
inner = trainer.step_fn


def recording_step(model, batch):
    seen.append((trainer.state.epoch, batch["index"].tolist()))
    return inner(model, batch)


trainer.step_fn = recording_step
trainer.fit()
(out / f"rank{env.rank}.json").write_text(json.dumps(seen))
cleanup(env)
