"""The per-instance memory cap: the resident memory of a worker and everything it started, read from
/proc (Linux; elsewhere the cap is not enforced), and the default cap, a fair share of the RAM."""
from __future__ import annotations

import os

OUT_OF_MEMORY = "out of memory"
POLL_SECONDS = 0.2  # how often a capped worker's memory is read (about 0.1 ms a read)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def total_ram() -> int:
    """Bytes of physical memory of this machine."""
    return _PAGE * os.sysconf("SC_PHYS_PAGES")


HEADROOM = 0.85  # of the RAM shared out: the system and the bench keep the rest, so the cap acts before the kernel's OOM killer


def fair_share(share: float) -> int:
    """This share of the machine's RAM (less the headroom), in bytes."""
    return int(total_ram() * HEADROOM * min(1.0, share))


def gigabytes(value: float) -> int:
    return int(value * 2 ** 30)


class MemoryWatch:
    """Whether a worker (the leader of its own process group) uses more than `limit` bytes of
    resident memory. Its own memory is read at every check (cheap); the whole group's, which needs
    a scan of /proc (about 10 ms on a busy machine), at every GROUP_EVERY-th check."""

    GROUP_EVERY = 10

    def __init__(self, pid: int, limit: int):
        self.pid, self.limit, self.checks = pid, limit, 0

    def exceeded(self) -> bool:
        self.checks += 1
        if resident_bytes(self.pid) > self.limit:
            return True
        return self.checks % self.GROUP_EVERY == 0 and group_resident_bytes(self.pid) > self.limit


def resident_bytes(pid: int) -> int:
    """Resident memory of one process (0 where /proc cannot tell, or once it has ended)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def group_resident_bytes(pgid: int) -> int:
    """Resident memory of every process of the process group."""
    total = 0
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return 0
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            total += int(fields[21]) * _PAGE  # rss, in pages
    return total
