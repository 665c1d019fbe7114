"""The table task on the Task shape: routing, the CLI's flags as settings, torchrun policy."""

import argparse

import pandas as pd
import pytest

from deepfit.errors import ConfigError
from deepfit.tasks import UnknownData, route
from deepfit.tasks.runner import settings_with
from deepfit.tasks.table import TableSettings, TableTask


def test_any_table_routes_to_the_table_task(tmp_path):
    csv = tmp_path / "houses.csv"
    pd.DataFrame({"a": [1, 2], "price": [3, 4]}).to_csv(csv, index=False)
    assert route(str(csv), target="price") == "table"
    assert route(pd.DataFrame({"a": [1]}), target="a") == "table"
    with pytest.raises(UnknownData, match="no such file"):
        route(str(tmp_path / "nowhere.csv"), target="price")
    assert TableTask.default_out(str(csv)) == "runs/houses"


def test_cli_flags_become_table_settings():
    args = argparse.Namespace(data="credit.csv", resume=False)
    given = {"target": "Status", "task": "classify", "epochs": 12, "time_limit": 30.0, "seed": 1, "batch_size": 64,
             "lr": 1e-3, "checkpoint_every": 5, "split_by": "date", "group": "shop", "types": {"zip": "category"}}
    chosen = TableTask.settings_from_cli(args, given)
    assert chosen["max_epochs"] == 12 and "epochs" not in chosen
    settings = settings_with(TableSettings, chosen)
    assert (settings.target, settings.task, settings.max_epochs, settings.types) == ("Status", "classify", 12,
                                                                                     {"zip": "category"})
    with pytest.raises(ConfigError, match="--target COL is required for a table"):
        TableTask.settings_from_cli(args, {"epochs": 3})
    # --resume continues the stored run: its target need not be given again
    assert TableTask.settings_from_cli(argparse.Namespace(data="credit.csv", resume=True), {}) == {}
    with pytest.raises(ConfigError, match="--steps does not apply to a table"):
        TableTask.settings_from_cli(args, {"target": "Status", "steps": 3})
