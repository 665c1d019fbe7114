"""Settings are grouped: every field of every task in one group, stored by group, and docs/settings.md lists them all."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from deepfit.errors import ConfigError
from deepfit.tasks.arrays.settings import ArraysSettings
from deepfit.tasks.forecast.settings import ForecastSettings
from deepfit.tasks.images.settings import ImageSettings
from deepfit.tasks.lm.settings import LMSettings
from deepfit.tasks.recommend.settings import RecommendSettings
from deepfit.tasks.settings import GROUP_DOCS
from deepfit.tasks.table import TableSettings

CLASSES = {"table": TableSettings, "image": ImageSettings, "lm": LMSettings, "arrays": ArraysSettings,
           "recommend": RecommendSettings, "forecast": ForecastSettings}
DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def _make(cls):
    return cls(target="y") if cls is TableSettings else cls()  # RecommendSettings: user, item, rating by default


@pytest.mark.parametrize("kind", CLASSES)
def test_every_field_is_in_exactly_one_known_group(kind):
    cls = CLASSES[kind]
    grouped = [name for names in cls.GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(f.name for f in dataclasses.fields(cls))
    assert len(grouped) == len(set(grouped))
    assert set(cls.GROUPS) <= set(GROUP_DOCS)


def test_one_name_has_one_group_in_every_task():
    home: dict[str, str] = {}
    for cls in CLASSES.values():
        for group, names in cls.GROUPS.items():
            for name in names:
                assert home.setdefault(name, group) == group, (name, cls.__name__)


@pytest.mark.parametrize("kind", CLASSES)
def test_settings_are_stored_by_group_and_read_back(kind):
    cls = CLASSES[kind]
    s = _make(cls)
    stored = s.to_json()
    assert set(stored) == {"version", *cls.GROUPS}
    assert stored["run"]["seed"] == 0
    assert cls.from_json(stored) == s


# The last version stored flat, where it is not the previous one, and the fields added since
# (with the value their migration gives a run of that time).
# (images: 3 grouped them, 4 named pretrained backbones; tables: 4 grouped them, 5 added text_encoder.)
LAST_FLAT = {TableSettings: (3, {"text_encoder": "ngrams"}), ImageSettings: (2, {})}


@pytest.mark.parametrize("kind", [k for k in CLASSES if CLASSES[k].VERSION > 1])  # recommend, forecast: grouped from version 1
def test_the_flat_layout_of_the_last_flat_version_is_grouped_by_its_migration(kind):
    cls = CLASSES[kind]
    s = _make(cls)
    version, added = LAST_FLAT.get(cls, (cls.VERSION - 1, {}))
    flat = {"version": version, **{k: v for k, v in s.flat_json().items() if k not in added}}
    assert cls.from_json(flat) == dataclasses.replace(s, **added)


def test_a_key_in_the_wrong_place_is_an_error_naming_it_and_its_group():
    stored = TableSettings(target="y").to_json()
    moved = {**stored, "model": {**stored["model"], "lr": 0.1}}
    with pytest.raises(ConfigError, match=r"unknown key 'lr' in group 'model'; it belongs in 'optimizer'"):
        TableSettings.from_json(moved)
    with pytest.raises(ConfigError, match=r"'lr' must be inside its group 'optimizer'"):
        TableSettings.from_json({**stored, "lr": 0.1})
    with pytest.raises(ConfigError, match=r"unknown key 'colour' in group 'model' \(known in 'model': k, width"):
        TableSettings.from_json({**stored, "model": {**stored["model"], "colour": "red"}})
    with pytest.raises(ConfigError, match=r"group 'run' must be a JSON object"):
        TableSettings.from_json({**stored, "run": 3})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'training'"):
        TableSettings.from_json({**stored, "training": {}})


def _documented() -> dict[str, dict[str, str]]:
    """task -> {setting: group} as docs/settings.md lists them."""
    out: dict[str, dict[str, str]] = {kind: {} for kind in CLASSES}
    group = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            group = line[3:].strip()
            continue
        m = re.match(r"\| `(\w+)` \| ([^|]+) \|", line)
        if m and group:
            for part in m.group(2).split(";"):
                kind = part.split(":")[0].strip()
                assert kind in CLASSES, (line, kind)
                out[kind][m.group(1)] = group
    return out


def test_docs_list_every_setting_of_every_task_in_its_group():
    documented = _documented()
    for kind, cls in CLASSES.items():
        actual = {name: group for group, names in cls.GROUPS.items() for name in names}
        assert documented[kind] == actual, kind
    headings = [line[3:].strip() for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    assert headings == list(GROUP_DOCS)
