"""Docstring examples run."""

import doctest
import importlib

import pytest

MODULES = [
    "deepfit",
    "deepfit.errors",
    "deepfit.metrics",
    "deepfit.engine.losses",
    "deepfit.engine.schedules",
    "deepfit.engine.learner",
    "deepfit.engine.budget",
    "deepfit.engine.callbacks.monitor",
    "deepfit.models.mlp",
    "deepfit.datasets",
    "deepfit.data.sources",
    "deepfit.serve.batcher",
    "deepfit.data.table",
    "deepfit.data.split",
    "deepfit.augment.image",
    "deepfit.data.images",
    "deepfit.data.images.readers",
    "deepfit.features.image",
    "deepfit.models.resnet",
    "deepfit.models.multimodal",
    "deepfit.models.efficientnet_lite",
    "deepfit.features.tokenizer",
    "deepfit.models.gpt",
    "deepfit.features.text",
    "deepfit.features.sequence",
    "deepfit.features.preprocessor",
    "deepfit.features.target",
    "deepfit.models.transformer",
    "deepfit.models.tabular",
    "deepfit.tasks.table.settings",
    "deepfit.tasks.table.labels",
    "deepfit.tasks.table.sizing",
    "deepfit.tasks.table.curves",
    "deepfit.tasks.lm.task",
    "deepfit.tasks.settings",
    "deepfit.data.corpus",
    "deepfit.sklearn",
    "deepfit.models.nbeats",
    "deepfit.tasks.forecast.settings",
    "deepfit.tasks.forecast.baselines",
    "deepfit.tasks.forecast.metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
