"""Run under torchrun: table runs through the runner; rank 0 writes the run, each rank its weights and info.

Usage: torchrun --standalone --nproc_per_node 2 ddp_table.py CASE DATA OUT PREFIX

CASE "timed": a time limit, so rank 0 sizes the ensemble and decides whether more models join it;
CASE "text": a text table without a time limit, text_bags models on their own carve-outs.
"""

import json
import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from deepfit.tasks.table import TableSettings, fit_table  # noqa: E402

if __name__ == "__main__":
    case, data, out, prefix = sys.argv[1:5]
    if case == "timed":
        settings = TableSettings(target="Status", time_limit=40, k=8, width=64, max_bags=2, patience=3, seed=0)
    else:
        settings = TableSettings(target="y", max_epochs=6, k=2, width=16, depth=1, text_bags=2, seed=0)
    predictor = fit_table(data, settings, out=out, progress=False)
    rank = torch.distributed.get_rank()
    save_file({k: v.contiguous() for k, v in predictor.model.state_dict().items()}, f"{prefix}.{rank}.safetensors")
    info = {k: v for k, v in predictor.info.items() if k != "fit_seconds"}
    with open(f"{prefix}.{rank}.json", "w", encoding="utf-8") as f:
        json.dump({"info": info, "metrics": predictor.metrics, "world": torch.distributed.get_world_size()}, f)
