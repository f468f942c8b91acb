"""Engine errors: configuration mistakes (one clear line, exit 2) and runtime link failures."""

from __future__ import annotations


class EngineConfigError(ValueError):
    """A bad engine option or preset combination: what, where, and how to fix it."""


class LinkDownError(RuntimeError):
    """A send on a crashed link (injected delay ``inf``) on the inline path."""

    def __init__(self, link: int, src: int, dst: int) -> None:
        super().__init__(
            f"link {link} ({src}_{dst}) is down: inline send from stage {src} to stage {dst} "
            "failed (NIC crash injected); only methods with delegates survive a crash"
        )
        self.link = link


class InjectedCrash(RuntimeError):
    """A crash injected on purpose (tests of the abort path)."""
