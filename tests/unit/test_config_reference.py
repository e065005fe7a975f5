"""config/README.md's key table is generated from the schema and must be up to date."""

from pathlib import Path

from diffxai.config.reference import reference

REPO = Path(__file__).resolve().parents[2]


def test_config_readme_is_generated_from_the_schema():
    assert (REPO / "config" / "README.md").read_text() == reference(), (
        "config/README.md is stale: run `python -m diffxai.config.reference > config/README.md`"
    )


def test_every_top_level_section_is_explained():
    text = (REPO / "config" / "README.md").read_text()
    from diffxai.config.load import load_schema

    for key in load_schema()["properties"]:
        assert f"`{key}`" in text.split("## Every key")[0] or f"| `{key}" in text, key
