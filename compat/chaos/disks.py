"""The file systems the nodes' data directories live on, for the disk nemeses (only when one of
them is enabled; otherwise a data directory is a plain directory of the run).

  disk-full   each node's disk is its own tmpfs of `size_mb` (work/disk<i>); the nemesis fills
              it with a filler file (work/disk<i>/filler) until ENOSPC, holds, deletes it.
  power-loss  each node's data directory is on a LazyFS mount (lazyfs.py: work/fs<i>, backed by
              work/disk<i>/lower, on the node's tmpfs when disk-full is enabled too); a power
              failure reverts every write not fsynced since, and the file system is mounted anew
              (the page cache of the old mount is gone with it).

The data directory itself is a subdirectory `data` of the node's root (never the mount point,
so a broker never sees the filler or lost+found-like files of the mount).
"""

import errno
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def mounts_under(prefix):
    """Mount points at or below `prefix`, deepest first."""
    prefix = os.path.realpath(prefix)
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_all(prefix):
    for point in mounts_under(prefix):
        subprocess.run(["umount", point], capture_output=True, timeout=30)
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


class Disks:
    def __init__(self, work_dir, nodes, size_mb=None, lazy=False, writeback_s=0.0):
        self.work_dir = os.path.realpath(work_dir)
        self.nodes = nodes
        self.size_mb = size_mb
        self.lazy = lazy
        self.writeback_s = writeback_s
        self.daemons = {}

    def disk(self, node):
        return os.path.join(self.work_dir, f"disk{node}")

    def backing(self, node):
        return os.path.join(self.disk(node), "lower") if self.lazy else self.disk(node)

    def mountpoint(self, node):
        return os.path.join(self.work_dir, f"fs{node}")

    def root(self, node):
        """Where the node's data directory lives (as the subdirectory `data` of it)."""
        return self.mountpoint(node) if self.lazy else self.disk(node)

    def setup(self):
        self.cleanup()
        for node in range(1, self.nodes + 1):
            os.makedirs(self.disk(node), exist_ok=True)
            if self.size_mb:
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", f"chaos-disk{node}",
                                self.disk(node)], check=True, capture_output=True, timeout=30)
            if self.lazy:
                os.makedirs(self.backing(node), exist_ok=True)
                os.makedirs(self.mountpoint(node), exist_ok=True)
                self.mount_lazy(node)

    def mount_lazy(self, node):
        log = open(os.path.join(self.work_dir, f"lazyfs{node}.log"), "ab")
        self.daemons[node] = subprocess.Popen([sys.executable, os.path.join(HERE, "lazyfs.py"), self.backing(node),
                                               self.mountpoint(node), str(self.writeback_s)], stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint(node)):
            if self.daemons[node].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lazyfs of node {node} did not mount; see {self.work_dir}/lazyfs{node}.log")
            time.sleep(0.05)

    def unmount_lazy(self, node):
        point = self.mountpoint(node)
        for _ in range(50):
            if not os.path.ismount(point):
                break
            if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.1)  # busy: a process of the killed node still closing its files
        else:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        daemon = self.daemons.pop(node, None)
        if daemon:
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)

    def power_fail(self, node):
        """Reverts every write of the node's disk that was not fsynced, and mounts its file system
        anew. The node must be dead (killed) already. Returns the daemon's report."""
        request = os.path.realpath(self.backing(node)) + ".powerfail"
        with open(request, "w", encoding="utf-8"):
            pass
        deadline = time.monotonic() + 30
        while not os.path.exists(request + ".done"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"lazyfs of node {node} did not apply the power failure")
            time.sleep(0.05)
        with open(request + ".done", encoding="utf-8") as handle:
            report = handle.read().strip()
        os.unlink(request + ".done")
        self.unmount_lazy(node)
        self.mount_lazy(node)
        return report

    def filler(self, node):
        return os.path.join(self.disk(node), "filler")

    def fill(self, node):
        """Writes the filler until the disk is full; returns its size in bytes."""
        written = 0
        chunk = b"\0" * (1 << 20)
        fd = os.open(self.filler(node), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 20, 1 << 12):
                while True:
                    try:
                        written += os.write(fd, chunk[:size])
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def unfill(self, node):
        try:
            os.unlink(self.filler(node))
        except FileNotFoundError:
            pass

    def ensure(self):
        """Heal: no filler left, every LazyFS mounted."""
        for node in range(1, self.nodes + 1):
            self.unfill(node)
            if self.lazy and not os.path.ismount(self.mountpoint(node)):
                self.mount_lazy(node)

    def cleanup(self):
        for node in list(self.daemons):
            self.unmount_lazy(node)
        unmount_all(self.work_dir)
