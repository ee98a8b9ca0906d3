"""File claims: several paths taken all or nothing, each conflict naming its holder.

    async with coord.claim(["src/auth.py", "./src/api.py"], holder="sprint-2") as claim:
        claim.paths                    # ["src/auth.py", "src/api.py"]
    # or, when another holds one:  ClaimConflict.conflicts == {"src/api.py": "sprint-1"}

Each path is a lease resource of kind ``claim``, so a claim is fenced, renewed and
freed like a lock, and one request takes every path or none (first come, first
served against waiting claims). Paths are normalised before they become names, so
two spellings of one file conflict: relative paths are taken from ``root`` (default:
the current directory), ``os.path.normpath`` folds ``./``, ``//`` and ``x/..``, and an
absolute path inside ``root`` is made relative to it. Every process must therefore
claim against the same root (the repository's top, typically). A path outside ``root``
is refused (InvalidInputError). A path that is not a valid lockstep name (a space,
non-ASCII, over 200 bytes) is claimed under a digest of its normalised form, so it
still conflicts with itself; conflicts always name the normalised path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ClaimConflict, InvalidInputError, InvalidNameError
from .lease_views import LeaseView, ViewRequest
from .leases import Lease, LeaseRequest
from .leases import request as lease_request
from .names import validate_name

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["Claim", "ClaimRequest", "claim_name", "normalize_path", "resolve_root"]

CLAIM_KIND = "claim"
DIGEST_PREFIX = "~sha256:"  # names of paths that are not valid names ('~' starts no path)


def resolve_root(root: str | os.PathLike[str] | None) -> str:
    """The absolute, normalised claim root (default: the current directory)."""
    return os.path.normpath(os.path.abspath(os.getcwd() if root is None else os.fspath(root)))


def normalize_path(path: object, root: str) -> str:
    """``path`` relative to ``root``, normalised, with ``/`` separators."""
    if not isinstance(path, str | os.PathLike):
        raise InvalidInputError(f"a claimed path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise InvalidInputError(f"a claimed path must be text, got bytes {text!r}")
    if not text:
        raise InvalidInputError("a claimed path must not be empty")
    relative = os.path.relpath(os.path.normpath(os.path.join(root, text)), root)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise InvalidInputError(f"path {text!r} is outside the claim root {root!r}; pass root= to claim it")
    if relative == os.curdir:
        raise InvalidInputError(f"path {text!r} is the claim root itself; claim the files under it")
    return relative.replace(os.sep, "/")


def claim_name(normalized: str) -> str:
    """The lease resource name of a normalised path: itself, or a digest if not a valid name."""
    try:
        return validate_name(normalized, what=CLAIM_KIND)
    except InvalidNameError:
        return DIGEST_PREFIX + hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class Claim(LeaseView):
    """Claimed :attr:`paths` (normalised, relative to :attr:`root`) and their lease's controls."""

    def __init__(self, lease: Lease, paths: list[str], root: str) -> None:
        super().__init__(lease)
        self.paths = paths
        self.root = root

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else ("released" if self.released else "held")
        return f"<Claim {self.paths} by {self.holder} {state}>"


class ClaimRequest(ViewRequest[Claim]):
    """``await`` it for a held :class:`Claim`, or ``async with`` it. Arguments are checked
    at the call; nothing is sent until awaited."""

    def __init__(
        self,
        coord: Coordinator,
        paths: object,
        *,
        ttl: object,
        wait: object,
        root: str | os.PathLike[str] | None,
        holder: str | None,
    ) -> None:
        if isinstance(paths, str | bytes | os.PathLike) or not isinstance(paths, Sequence | set | frozenset):
            raise InvalidInputError(f"paths must be a list of paths, got {type(paths).__name__}")
        self.root = resolve_root(root)
        self.paths = list(dict.fromkeys(normalize_path(p, self.root) for p in paths))  # one entry per file
        if not self.paths:
            raise InvalidInputError("paths must name at least one file")
        self._path_of = {claim_name(p): p for p in self.paths}
        self.names = list(self._path_of)  #: the lease resource names (kind "claim"), per path
        self._request: LeaseRequest = lease_request(
            coord, CLAIM_KIND, self.names, ttl=ttl, wait=wait, owner=holder, claim_errors=True
        )

    def __repr__(self) -> str:
        return f"<ClaimRequest {self.paths} root={self.root!r}>"

    async def _acquire(self) -> Claim:
        try:
            lease = await self._request
        except ClaimConflict as conflict:
            named = {self._path_of.get(name, name): who for name, who in conflict.conflicts.items()}
            raise ClaimConflict(named, waited=conflict.waited) from None
        return Claim(lease, list(self.paths), self.root)
