#!/usr/bin/env python
"""MaskFeat pre-training with the model-zoo interface (same as ``maskfeat run``).

    python run_maskfeat.py --config configs/pretrain/maskfeat_vit-base-p16_in1k.yaml \
        --launcher pytorch --nproc-per-node 8 --amp --cfg-options train_dataloader.dataset.data_root=data/imagenet
"""
import sys

from maskfeat.commands.run import main

if __name__ == "__main__":
    sys.exit(main())
