"""An experiment file's TOML table, read key by key (``pmctl.experiment_file``'s typed values).

Each read checks one key's type and range and fails with the same shaped one-line
``UserError`` naming the file and the key, with a hint. ``delays_ms`` is read here too: the
file says milliseconds, the cells seconds (``inf`` = link down). Pure: reads the file only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from injector.links import same_delay
from pmctl.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# An example of each list-of-strings key, for the hint of a bad one.
_EXAMPLES = {"methods": "zb", "links": "2_3", "traces": "moving.trace"}


class FileValues:
    """The table of the experiment file ``path`` (empty until ``read``) and its typed reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def error(self, key: str, what: str, hint: str) -> UserError:
        return UserError(what, f"{self.path}: {key}", hint)

    def read(self) -> dict[str, Any]:
        """Reads and parses the file into ``data`` (a missing file, bad text or bad TOML is
        a ``UserError`` naming the file)."""
        if not self.path.is_file():
            raise UserError("experiment file not found", str(self.path),
                            "give the path of an existing .toml file")
        try:
            self.data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the file ({exc})", str(self.path), "check the file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"not valid TOML: {exc}", str(self.path), "fix the syntax") from exc
        return self.data

    def string(self, key: str) -> str:
        """A non-empty string, stripped."""
        val = self.data.get(key)
        if not isinstance(val, str) or not val.strip():
            raise self.error(key, f"must be a non-empty string, got {val!r}", f'quote it: {key} = "..."')
        return val.strip()

    def integer(self, key: str, low: int) -> int:
        """An integer (not a bool) of at least ``low``."""
        val = self.data[key]
        if isinstance(val, bool) or not isinstance(val, int):
            raise self.error(key, f"must be an integer, got {val!r}", f"e.g. {key} = {max(low, 2)}")
        if val < low:
            raise self.error(key, f"{key} = {val}: must be >= {low}", f"e.g. {key} = {max(low, 2)}")
        return val

    def strings(self, key: str, required: bool = False) -> list[str]:
        """A list of strings ([] when the key is absent; non-empty when ``required``)."""
        if key not in self.data:
            return []
        raw = self.data[key]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw) or (required and not raw):
            raise self.error(key, f"must be a {'non-empty ' if required else ''}list of strings, got {raw!r}",
                             f'e.g. {key} = ["{_EXAMPLES[key]}"]')
        return raw

    def delays_ms(self, has_links: bool) -> list[float]:
        """``delays_ms`` in seconds (``inf`` = a crash), each once; [] when the file gives none."""
        if "delays_ms" not in self.data:
            if has_links:
                raise self.error("delays_ms", "missing: links are given but no delays",
                                 "add delays_ms = [60] (milliseconds; 0 = no fault, inf = link down)")
            return []
        raw = self.data["delays_ms"]
        if not isinstance(raw, list) or not raw:
            raise self.error("delays_ms", f"must be a non-empty list of numbers, got {raw!r}",
                             "e.g. delays_ms = [0, 60, 120]")
        out: list[float] = []
        for i, d in enumerate(raw):
            if isinstance(d, bool) or not isinstance(d, (int, float)) or math.isnan(d):
                raise self.error(f"delays_ms[{i}]", f"{d!r} is not a number",
                                 "write milliseconds as a number, e.g. 60 (inf = link down)")
            if d < 0:
                raise self.error(f"delays_ms[{i}]", f"{d!r} is negative", "use 0 (no fault) or more")
            if not any(same_delay(d / 1000.0, o) for o in out):
                out.append(d / 1000.0)
        if not has_links and any(d for d in out):
            raise self.error("delays_ms", "delays are given but no links",
                             'add links = ["2_3"] (the slow links of each cell)')
        return out
