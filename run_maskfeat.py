#!/usr/bin/env python
"""MaskFeat training with the model-zoo interface (same as ``maskfeat run``); --config takes our
recipes or mmpretrain's MaskFeat config names (docs/tools.md), e.g. the zoo's command as typed:

    python run_maskfeat.py --config ../configs/maskfeat/maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py \
        --launcher pytorch --nproc-per-node 8 --amp \
        --cfg-options train_dataloader.dataset.data_root=data/imagenet
"""
import sys

from maskfeat.commands.run import main

if __name__ == "__main__":
    sys.exit(main())
