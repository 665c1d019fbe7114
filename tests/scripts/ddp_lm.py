"""Run under torchrun: a tiny time-limited language model; rank 0 writes the run, each rank its weights.

Usage: torchrun --standalone --nproc_per_node 2 ddp_lm.py OUT_DIR WEIGHTS_PREFIX
"""

import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from deepfit.datasets import tweets_corpus  # noqa: E402
from deepfit.tasks.lm import LMSettings, fit_lm  # noqa: E402

if __name__ == "__main__":
    out, prefix = sys.argv[1], sys.argv[2]
    settings = LMSettings(vocab_size=512, dim=64, layers=1, heads=2, context=32, batch_size=8, eval_every=20,
                          valid_windows=16, lr=3e-3, time_limit=6)
    lm = fit_lm([tweets_corpus()[:30_000]], settings, out=out, progress=False)
    rank = torch.distributed.get_rank()
    save_file({k: v.contiguous() for k, v in lm.model.state_dict().items()}, f"{prefix}.{rank}.safetensors")
