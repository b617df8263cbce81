"""Every Python block in the README and docs/ runs as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(block, id=f"{page.name}-{i}")
    for page in PAGES
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL))
]


def test_readme_shows_the_losses():
    assert any("FocalLoss" in block.values[0] for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS)
def test_block_runs(block):
    exec(compile(block, "docs", "exec"), {})


def test_the_grid_file_in_the_docs_is_the_default_experiment(tmp_path):
    from focalcal.engine.config import load_config_file
    from focalcal.engine.ood import default_ood
    from focalcal.experiments.presets import preset
    from focalcal.experiments.reproduce import DEFAULT_LOSSES

    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "training.md").read_text(),
                          re.DOTALL)  # fmt: skip
    (tmp_path / "grid.toml").write_text(block)
    config, grid = load_config_file(tmp_path / "grid.toml")
    assert config == preset("fashion-mnist")
    assert grid == {"losses": list(DEFAULT_LOSSES), "ood": default_ood([config])}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_local_link_and_figure_exists(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [t.split("#")[0] for t in targets if not t.startswith(("http://", "https://", "#"))]
    missing = [t for t in local if not (page.parent / t).exists()]
    assert missing == []
