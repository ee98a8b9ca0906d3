"""Parsing /proc/self/mountinfo and spotting network filesystems, on sample texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.drivers import fsinfo
from lockstep.drivers.fsinfo import is_network_fstype, mount_for, network_mount_for, parse_mountinfo

SAMPLE = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
40 27 0:45 / /mnt/nfs rw,relatime shared:20 master:3 - nfs4 fileserver:/export rw,vers=4.2
41 40 0:46 / /mnt/nfs/local-cache rw,relatime - ext4 /dev/vdb rw
42 27 0:47 / /mnt/nfsother rw - ext4 /dev/vdc rw
43 27 0:48 / /home/me/My\\040Drive rw,nosuid - fuse.sshfs me@host:/srv rw,user_id=0
44 27 0:49 / /srv/stack rw - ext4 /dev/vdd rw
45 27 0:50 / /srv/stack rw - cifs //nas/share rw,vers=3.0
this line is garbage and is skipped
46 27 0:51 / /broken rw -
"""


def test_parses_fields_and_unescapes_mount_points() -> None:
    mounts = parse_mountinfo(SAMPLE)
    points = [m.mount_point for m in mounts]
    assert points == [
        "/proc", "/", "/mnt/nfs", "/mnt/nfs/local-cache", "/mnt/nfsother",
        "/home/me/My Drive", "/srv/stack", "/srv/stack",
    ]  # fmt: skip
    nfs = mounts[2]
    assert (nfs.fstype, nfs.source) == ("nfs4", "fileserver:/export")  # optional fields skipped


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/mnt/nfs/coord.db", "nfs4"),
        ("/mnt/nfs", "nfs4"),
        ("/mnt/nfs/local-cache/coord.db", "ext4"),  # the longer mount point wins
        ("/mnt/nfsother/coord.db", "ext4"),  # a prefix of the name is not a parent folder
        ("/home/me/My Drive/x.db", "fuse.sshfs"),
        ("/srv/stack/x.db", "cifs"),  # stacked on the same point: the last one is on top
        ("/var/lib/x.db", "ext4"),
    ],
)
def test_the_longest_containing_mount_point_wins(path: str, fstype: str) -> None:
    found = mount_for(path, parse_mountinfo(SAMPLE))
    assert found is not None and found.fstype == fstype


@pytest.mark.parametrize(
    "fstype",
    [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.rclone",
    ],
)
def test_network_filesystems_are_recognised(fstype: str) -> None:
    assert is_network_fstype(fstype)


@pytest.mark.parametrize(
    "fstype", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "fuseblk", "fuse.ntfs-3g"]
)
def test_local_filesystems_are_not(fstype: str) -> None:
    assert not is_network_fstype(fstype)


def test_symlinks_are_resolved_before_the_lookup(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    (tmp_path / "link").symlink_to(remote)
    text = SAMPLE + f"50 27 0:60 / {remote} rw - nfs server:/vol rw\n"
    found = network_mount_for(str(tmp_path / "link" / "not-yet" / "coord.db"), text)
    assert found is not None and found.mount_point == str(remote)
    assert network_mount_for(str(tmp_path / "elsewhere.db"), text) is None


def test_no_mountinfo_means_no_objection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fsinfo, "MOUNTINFO_PATH", str(tmp_path / "absent"))
    assert network_mount_for("/mnt/nfs/coord.db") is None


def test_this_machines_temp_folder_is_local(tmp_path: Path) -> None:
    assert network_mount_for(str(tmp_path / "coord.db")) is None
