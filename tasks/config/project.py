"""Where the project is: the folder whose ``cortex-perf.yaml`` is read and against which relative
paths in the settings (``data/lake``, ``data/state.duckdb``, rule files) are resolved.

Why one resolution, used by ``load_settings``: a relative path in the settings means "in this
project", not "wherever this process started". Jupyter starts a notebook's kernel in the
notebook's folder (``notebooks/``), people run the CLI from a subfolder, workers change into their
pull step's directory; each of them must find the same config file and the same lake, or a report
opened in Jupyter reads ``notebooks/data/lake`` and shows nothing.

The rule, like git's: the config file named (``--config``, ``CORTEX_PERF_CONFIG``) → its folder;
otherwise walk up from the working directory to the first folder that holds a ``cortex-perf.yaml``
(that file is the config) or marks a project's top (``pyproject.toml``, ``.git``: the repository
root); nothing found → the working directory itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_FILE", "PROJECT_MARKERS", "anchor", "anchor_paths", "find_project", "project_root"]

CONFIG_FILE = "cortex-perf.yaml"
#: A folder holding one of these is a project's top: the search stops there, so a config file of
#: some unrelated project further up the tree is never picked up.
PROJECT_MARKERS = ("pyproject.toml", ".git")


def find_project(start: str | os.PathLike[str] | None = None) -> tuple[Path, Path | None]:
    """``(project root, its cortex-perf.yaml or None)`` for a process working in ``start`` (default: cwd)."""
    here = Path(start).absolute() if start is not None else Path.cwd()
    for folder in (here, *here.parents):
        config = folder / CONFIG_FILE
        if config.is_file():
            return folder, config
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder, None
    return here, None


def project_root(config: str | os.PathLike[str] | None = None) -> Path:
    """The folder relative settings paths mean: the named config file's folder, else ``find_project``'s."""
    if config is not None:
        return Path(config).absolute().parent
    return find_project()[0]


def anchor(path: str | None, root: Path) -> str | None:
    """``path`` under ``root`` when it is a relative filesystem path; URLs and absolute paths unchanged."""
    if not path or "://" in path or os.path.isabs(path):
        return path  # URLs (s3://, file://) and absolute paths mean what they say
    return str(root / path)


def anchor_paths(tree: dict[str, Any], root: Path) -> None:
    """Make the relative filesystem paths of a settings ``model_dump`` tree absolute under ``root``,
    in place: ``data_dir``, ``lake.root``, ``state.path``, ``alerting.rule_files``/``notify_config``."""
    tree["data_dir"] = anchor(tree.get("data_dir"), root)
    for section, key in (("lake", "root"), ("state", "path"), ("alerting", "notify_config")):
        if isinstance(tree.get(section), dict):
            tree[section][key] = anchor(tree[section].get(key), root)
    alerting = tree.get("alerting")
    if isinstance(alerting, dict) and alerting.get("rule_files"):
        alerting["rule_files"] = [anchor(p, root) for p in alerting["rule_files"]]
