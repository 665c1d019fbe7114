"""Image settings migrations: version 3 (``pretrained`` a file or null) reads as version 4 with the
meaning it had. The fixture is ``ImageSettings(size=48, epochs=3, batch_size=8, seed=2).to_json()``
as written by deepfit at 189b062 (the last commit with version 3)."""

from __future__ import annotations

import json
from pathlib import Path

from deepfit.tasks.images.settings import ImageSettings

FIXTURE = Path(__file__).parent / "fixtures" / "image_settings_v3.json"


def test_a_version_3_null_pretrained_stays_from_scratch():
    stored = json.loads(FIXTURE.read_text())
    assert stored["version"] == 3 and stored["model"]["pretrained"] is None
    settings = ImageSettings.from_json(stored)
    assert settings == ImageSettings(size=48, epochs=3, batch_size=8, seed=2, pretrained="none")
    assert settings.to_json()["version"] == ImageSettings.VERSION == 4
    assert ImageSettings.from_json(settings.to_json()) == settings


def test_a_version_3_weights_file_is_kept(tmp_path):
    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(b"")
    stored = json.loads(FIXTURE.read_text())
    stored["model"]["pretrained"] = str(weights)
    settings = ImageSettings.from_json(stored)
    assert settings.pretrained == str(weights) and settings.weights_file == str(weights)
