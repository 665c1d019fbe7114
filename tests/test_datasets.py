import numpy as np
import pytest

from deepfit import datasets
from deepfit.errors import ConfigError


def test_digits():
    d = datasets.load("digits")
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert set(np.unique(d.y_train)) == set(range(10))


def test_mnist1d_default_split():
    d = datasets.load("mnist1d")
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.task == "classify" and len(d.classes) == 10


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        datasets.load("digit")
