"""Run under torchrun: a bundled dataset (digits) through the runner; rank 0 writes the run, each rank its weights.

Usage: torchrun --standalone --nproc_per_node 2 ddp_arrays.py OUT_DIR WEIGHTS_PREFIX
"""

import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from deepfit.tasks.arrays import ArraysSettings  # noqa: E402
from deepfit.tasks.runner import fit  # noqa: E402

if __name__ == "__main__":
    out, prefix = sys.argv[1], sys.argv[2]
    predictor = fit("arrays", "digits", ArraysSettings(data="digits", epochs=5, batch_size=32),
                    out=out, progress=False)
    rank = torch.distributed.get_rank()
    save_file({k: v.contiguous() for k, v in predictor.model.state_dict().items()}, f"{prefix}.{rank}.safetensors")
