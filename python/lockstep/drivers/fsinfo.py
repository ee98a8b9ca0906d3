"""Which filesystem holds a path, and whether it is a network one.

SQLite's locking (POSIX locks plus a shared-memory index in WAL mode) is not
reliable over network filesystems: two hosts can both believe they hold the
write lock, and WAL's ``-shm`` file cannot be shared across hosts at all. The
file driver therefore refuses them unless told otherwise.

Detection reads ``/proc/self/mountinfo`` (Linux; see proc(5)) and takes the
mount with the longest mount point containing the path. The parser is a pure
function of the text so it can be tested on sample lines. Platforms without
``/proc`` are not inspected: :func:`network_mount_for` returns None there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = [
    "MOUNTINFO_PATH",
    "Mount",
    "is_network_fstype",
    "mount_for",
    "network_mount_for",
    "parse_mountinfo",
]

#: Read by :func:`network_mount_for`; tests point it at a sample file.
MOUNTINFO_PATH = "/proc/self/mountinfo"

#: Filesystem types whose files live on another host (or are shared by several).
NETWORK_FSTYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "ncpfs", "9p", "afs", "kafs", "coda",
        "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "orangefs", "pvfs2", "ocfs2", "gfs2",
        "panfs", "davfs", "sshfs", "lizardfs", "moosefs", "mfs",
    }
)  # fmt: skip

#: FUSE subtypes (``fuse.NAME``) that are network clients.
NETWORK_FUSE_SUBTYPES = frozenset(
    {
        "sshfs", "s3fs", "rclone", "gcsfuse", "juicefs", "glusterfs", "ceph-fuse", "cephfs",
        "davfs", "davfs2", "curlftpfs", "goofys", "mountpoint-s3", "blobfuse", "blobfuse2",
        "lizardfs", "mfs", "moosefs", "seaweedfs", "objectivefs", "smbnetfs", "afpfs",
    }
)  # fmt: skip

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo, the parts that matter here."""

    mount_point: str
    fstype: str
    source: str

    @property
    def is_network(self) -> bool:
        return is_network_fstype(self.fstype)

    def describe(self) -> str:
        return f"{self.fstype} filesystem {self.source!r} mounted at {self.mount_point}"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every well-formed line of a mountinfo file, in file order (later mounts on top).

    A line reads: ``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``.
    Malformed lines are skipped rather than trusted.
    """
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3:
            continue
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
            )
        )
    return mounts


def is_network_fstype(fstype: str) -> bool:
    kind = fstype.lower()
    if kind in NETWORK_FSTYPES:
        return True
    if kind.startswith("fuse."):  # not fuseblk: that one is a local block device
        return kind.partition(".")[2] in NETWORK_FUSE_SUBTYPES
    return False


def _contains(mount_point: str, path: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def mount_for(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount holding the absolute, resolved ``path``: the longest containing mount point.

    Of several mounts on the same point, the last one listed is on top and wins.
    """
    best: Mount | None = None
    for mount in mounts:
        if _contains(mount.mount_point, path) and (
            best is None or len(mount.mount_point) >= len(best.mount_point)
        ):
            best = mount
    return best


def network_mount_for(path: str, mountinfo_text: str | None = None) -> Mount | None:
    """The network mount holding ``path``, or None (local, or the platform has no mountinfo).

    ``path`` is resolved through symlinks first (it need not exist yet).
    """
    if mountinfo_text is None:
        try:
            with open(MOUNTINFO_PATH, encoding="utf-8", errors="surrogateescape") as fh:
                mountinfo_text = fh.read()
        except OSError:
            return None  # no /proc: nothing to inspect, allowed
    mount = mount_for(os.path.realpath(path), parse_mountinfo(mountinfo_text))
    return mount if mount is not None and mount.is_network else None
