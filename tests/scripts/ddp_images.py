"""Run under torchrun: image runs through the runner; rank 0 writes each run, each rank its weights.

1. ``OUT/memory``: decoded in memory, ``time_limit`` without ``epochs``, so the epoch count is
   measured against the clock — rank 1's probe is made to report a step 10^6 times slower, so
   the ranks would plan different counts (and hang) unless rank 0's is the one used.
2. ``OUT/stream``: streamed from the files (``max_memory_gb`` tiny), ImageBatches sharded by rank.

Usage: torchrun --standalone --nproc_per_node 2 ddp_images.py DATA_DIR OUT_DIR
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

import deepfit.tasks.images.task as image_task  # noqa: E402
from deepfit.tasks.images import ImageSettings, fit_images  # noqa: E402

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])
    if rank == 1:
        measured = image_task.probe_step_seconds
        image_task.probe_step_seconds = lambda *a, **k: measured(*a, **k) * 1e6
    runs = {"memory": ImageSettings(time_limit=600, batch_size=16, num_workers=0),
            "stream": ImageSettings(epochs=4, batch_size=16, num_workers=0, max_memory_gb=1e-9)}
    for name, settings in runs.items():
        predictor = fit_images(data, settings, out=os.path.join(out, name), progress=False)
        save_file({k: v.contiguous() for k, v in predictor.model.state_dict().items()},
                  os.path.join(out, f"{name}.{rank}.safetensors"))
        with open(os.path.join(out, f"{name}.{rank}.json"), "w") as f:
            json.dump({"plan": predictor.info["plan"], "epochs": predictor.info["epochs"],
                       "streamed": predictor.info["streamed"], "metrics": predictor.metrics}, f)
