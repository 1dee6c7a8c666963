#!/usr/bin/env bash
# One prepared run for a machine with a GPU (about 10 minutes): the equality checks of every GPU
# path, then the throughput table (bf16 eager + compiled, fp16 eager) and the JPEG data mode.
# Results land in ${OUT:-work_dirs/device_check}/ (JSON + text).
set -u
out=${OUT:-work_dirs/device_check}
mkdir -p "$out"
python bench/gpu_check.py 2>&1 | tee "$out/gpu_check.txt"
python bench/throughput.py --amp bf16 --compile eager,compiled --json "$out/step_bf16.json" 2>&1 | tail -8 | tee "$out/step_bf16.txt"
python bench/throughput.py --amp fp16 --compile eager --json "$out/step_fp16.json" 2>&1 | tail -6 | tee "$out/step_fp16.txt"
python bench/throughput.py --skip-steps --amp bf16 --compile compiled --data /tmp/maskfeat_jpegs --make-data 6144 \
  --workers "$(( $(nproc) - 2 ))" --decode cpu,device --steps 20 --json "$out/data.json" 2>&1 | tail -6 | tee "$out/data.txt"
