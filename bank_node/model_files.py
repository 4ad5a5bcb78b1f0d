"""The file names of a model directory and of the registry's pointer (no ML stack imported).

``bank_node.scoring_model`` loads a model directory; ``bank_node.registry`` keeps versions
of it under ``state_dir/models``. Both, and the ``bank-node models`` commands, read these
names from here so that listing versions never loads torch.
"""

from __future__ import annotations

from pathlib import Path

from bank_node.config import ConfigError

MODEL_WEIGHTS = "global_model.npy"
MODEL_META = "global_model.json"
MODELS_DIR = "models"  # the registry's versions, inside a state directory
PROMOTED = "promoted"  # in MODELS_DIR: the name of the promoted version


def promoted_directory(directory: Path) -> tuple[Path, str | None]:
    """The promoted version's directory and name, or ``directory`` itself without a registry."""
    pointer = directory / MODELS_DIR / PROMOTED
    if not pointer.exists():
        return directory, None
    name = pointer.read_text().strip()
    target = pointer.parent / name
    # A name with a separator would point outside the registry: refused like a missing one.
    if not name or "/" in name or name.startswith(".") or not target.is_dir():
        raise ConfigError(
            f"{pointer} names version {name!r}, but {target} does not exist; "
            "`bank-node models list` shows the versions, `bank-node models promote VERSION` "
            "promotes one"
        )
    return target, name
