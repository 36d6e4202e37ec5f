"""genre-vit: music genre classification with Vision Transformers over spectrograms."""
from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
