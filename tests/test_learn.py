"""The learning path (docs/learn/): every chapter's quick version runs and its model beats its
baseline; `deepfit learn` lists and runs chapters; the pages quote their chapter's last full run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepfit.errors import ConfigError
from deepfit.learn import CHAPTERS, chapter, run_chapter
from deepfit.learn.build import page_blocks, refresh_page

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "learn"


def check_1(r):
    assert r["majority"] < r["linear"] and r["majority"] < r["deepfit"]
    assert r["overfit_train"] > r["overfit_test"]


def check_2(r):
    assert r["xor_linear"] < 0.8 < 0.95 < r["xor_mlp"]  # no line separates XOR; one hidden layer does
    assert r["gradcheck"] and r["gradcheck_catches_bug"]
    assert min(r["digits"].values()) > 0.6  # chance is 0.1


def check_3(r):
    methods = r["methods"]
    assert min(v["test accuracy"] for v in methods.values()) > 0.2  # chance is 0.1
    assert methods["none"]["train accuracy"] > methods["none"]["test accuracy"]


def check_4(r):
    assert min(r["optimizers"].values()) > 0.15
    assert r["final_loss"]["AdamW, lr 1e-3"] < r["final_loss"]["SGD, lr 0.05"]
    assert 1e-5 < r["suggestion"] < 1 and min(r["constant"], r["one_cycle"]) > 0.15


def check_5(r):
    assert min(r["mnist1d"].values()) > 0.15 and max(r["mnist1d"].values()) > 0.25  # chance is 0.1
    assert min(r["digits"].values()) > 0.5


def check_6(r):
    assert r["nats_per_char"] < r["unigram"] < r["uniform"]
    assert r["sampling"]["greedy"]["known"] > 0.5


def check_7(r):
    assert r["rmse"] < 0.8 * r["mean_rmse"] and r["top_columns"]


def check_8(r):
    assert r["test_accuracy"] > 3 * r["chance"]


def check_9(r):
    assert r["placeholder"] is True


def check_10(r):
    assert r["load_identical"] and r["cli_gap"] < 1e-3 and r["http_gap"] < 1e-3 and r["onnx_inputs"] >= 13


CHECKS = {n: globals()[f"check_{n}"] for n in range(1, 11)}


@pytest.mark.parametrize("number", [ch.number for ch in CHAPTERS])
def test_quick_chapter_beats_its_baseline(number, tmp_path):
    result = run_chapter(number, tmp_path, quick=True)
    CHECKS[number](result)
    assert result["printed"]
    for name in result["printed"].split("figure: ")[1:]:
        assert (tmp_path / name.split()[0]).is_file()


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(ConfigError, match="there is no chapter 11: the chapters are 1..10"):
        chapter(11)
    with pytest.raises(ConfigError, match="no chapter 'x'"):
        chapter("x")


def _deepfit(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "deepfit", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_cli_lists_the_chapters_and_runs_one(tmp_path):
    listed = _deepfit("learn")
    assert listed.returncode == 0, listed.stderr
    for ch in CHAPTERS:
        assert f"{ch.number:3d}  {ch.title}" in listed.stdout
    assert "issue 15" in listed.stdout and "issue 16" in listed.stdout
    done = _deepfit("learn", "2", "--quick", "--out", str(tmp_path / "ch2"))
    assert done.returncode == 0, done.stderr
    assert f"figures go to {tmp_path / 'ch2'}" in done.stdout and "XOR, 2-layer MLP" in done.stdout
    saved = json.loads((tmp_path / "ch2" / "output.json").read_text())
    assert saved["xor_mlp"] > 0.95 and (tmp_path / "ch2" / "feedforward.png").is_file()
    bad = _deepfit("learn", "12")
    assert bad.returncode == 2 and "there is no chapter '12'" in bad.stderr


def test_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    for ch in CHAPTERS:
        assert f"]({ch.page})" in index, ch.page
    assert "docs/learn/index.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("number", [ch.number for ch in CHAPTERS])
def test_page_quotes_its_last_full_run(number):
    """The page's output block is what the committed full run printed and its code block is the
    chapter's current source (`make learn` rewrites both); every figure it shows exists."""
    ch = chapter(number)
    text = (DOCS / ch.page).read_text()
    saved = DOCS / "results" / ch.page.replace(".md", ".json")
    if not saved.exists():
        pytest.skip(f"no full run of chapter {number} is committed yet: run `make learn`")
    result = json.loads(saved.read_text())
    assert result["quick"] is False and result["chapter"] == number
    assert "<!-- learn:output -->" in text and "<!-- learn:code -->" in text
    assert refresh_page(text, page_blocks(ch, result)) == text, f"{ch.page} is stale: run `make learn`"
    for name in result["figures"]:
        assert f"figures/{ch.page.removesuffix('.md')}/{name}" in text, name
        assert (DOCS / "figures" / ch.page.removesuffix(".md") / name).is_file()
