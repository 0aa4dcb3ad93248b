"""Presets: partial run configurations for known tasks, merged *under* the user's values.

``unetlab train --preset isbi2012 --data ../shared/datasets/isbi2012`` starts from the preset
and any field given in a config file, an option or ``--set`` wins. Each preset is a plain dict
of the :class:`~unetlab.engine.config.RunConfig` shape, in its own module with the reasons for
its values (they are Python, not YAML files, so they ship inside the package with no
package-data setup).
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from unetlab.errors import UnetlabError

PRESETS = ("camvid", "demo", "isbi2012")


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A fresh copy of the preset ``name`` (the caller may change it)."""
    if name not in PRESETS:
        raise UnetlabError(
            f"unknown preset {name!r}", hint=f"choose one of: {', '.join(PRESETS)}"
        )
    module = importlib.import_module(f"unetlab.presets.{name}")
    return copy.deepcopy(module.PRESET)
