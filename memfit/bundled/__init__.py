"""What the wheel ships besides code: the recipes (`memfit train smollm2-cpu`) and the CC BY 4.0 climate sample the
demo trains on by default (two marine-heatwave papers; climate/NOTICE names them and their licence).

In the repository these folders are links to the top-level `recipes/` and `examples/data/climate/` (where README,
examples and tests name them); a built wheel holds copies (pyproject's package-data), so an installed memfit finds
them here whatever the current folder."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPES_DIR = (HERE / "recipes").resolve()  # resolved: recorded paths name the real folder
CLIMATE_SAMPLE = (HERE / "climate").resolve()
