"""Run under torchrun: a fixed-length image run with checkpoints, new or resumed (rank 0 writes it).

Usage: torchrun --standalone --nproc_per_node 2 ddp_images_resume.py DATA_DIR OUT_DIR [--resume]
"""

import sys

import torch

torch.set_num_threads(1)

from deepfit.tasks.images import ImageSettings, fit_images  # noqa: E402

if __name__ == "__main__":
    data, out, resume = sys.argv[1], sys.argv[2], "--resume" in sys.argv[3:]
    settings = ImageSettings(epochs=30, batch_size=16, checkpoint_every=10, num_workers=0, seed=1)
    fit_images(data, None if resume else settings, out=out, resume=resume, progress=False)
