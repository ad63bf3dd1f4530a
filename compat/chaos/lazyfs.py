#!/usr/bin/env python3
"""A small LazyFS: a FUSE passthrough file system that can forget what was not fsynced.

  lazyfs.py BACKING MOUNTPOINT [WRITEBACK_S]   (foreground; `umount MOUNTPOINT` stops it)

Every operation goes through to BACKING at once (reads see every write, as through a page
cache). What it adds is an undo log per file: before a write or truncate changes bytes that
were there at the file's last fsync, the old bytes are saved; fsync/fdatasync of the file drops
its log. A "power failure" (the request file below) replays every log backwards and truncates
each file to its size at its last fsync, so BACKING holds exactly what was fsynced; from then on
writes are dropped (the kernel may still write back dirty mmap pages of the killed process) until
the file system is unmounted. The harness then mounts a fresh one over the same BACKING.

WRITEBACK_S (default 0: never) models the kernel's periodic writeback of dirty pages (Linux writes
back data dirty for longer than vm.dirty_expire_centisecs, 30 s by default): a file whose oldest
un-fsynced change is older than that counts as written back, as if fsynced then. With 0, data
not fsynced is lost however old it is (LazyFS's model, the worst case).

Model (as LazyFS's default): file *data* is volatile until the file's fsync; namespace
operations (create, mkdir, rename, unlink, link, symlink) are durable at once. So a file
written and renamed without fsync comes back with the name and no (or its old synced) content,
and a file appended to without fsync comes back at its last fsynced length.

Control: touch MOUNTPOINT's sibling file `<BACKING>.powerfail`; the daemon applies the failure,
then renames it to `<BACKING>.powerfail.done` (its first line: files reverted, bytes restored).
"""

import errno
import os
import sys
import threading
import time

from fuse import FUSE, FuseOSError, Operations  # fusepy (libfuse2)


class LazyFS(Operations):
    def __init__(self, root, writeback_s=0.0):
        self.root = os.path.realpath(root)
        self.writeback_s = writeback_s
        self.mutex = threading.Lock()
        self.undo = {}  # path -> {"size": size at last fsync, "ops": [(offset, old bytes)]}
        self.failed = False

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # --- the undo log ---------------------------------------------------------------------------

    def _entry(self, path, fd):
        entry = self.undo.get(path)
        if entry is None:
            entry = {"size": os.fstat(fd).st_size, "ops": [], "since": time.monotonic()}
            self.undo[path] = entry
        return entry

    def _save(self, entry, fd, offset, length):
        """Saves the bytes in [offset, offset+length) that lie below the synced size."""
        end = min(offset + length, entry["size"])
        if offset < end:
            entry["ops"].append((offset, os.pread(fd, end - offset, offset)))

    def write_back(self):
        """Forgets the undo log of every file dirty for longer than writeback_s."""
        with self.mutex:
            if self.failed:
                return
            old = time.monotonic() - self.writeback_s
            for path in [p for p, e in self.undo.items() if e["since"] <= old]:
                del self.undo[path]

    def power_fail(self):
        with self.mutex:
            self.failed = True
            files = restored = 0
            for path, entry in self.undo.items():
                full = self._full(path)
                try:
                    fd = os.open(full, os.O_WRONLY)
                except OSError:
                    continue
                try:
                    for offset, old in reversed(entry["ops"]):
                        os.pwrite(fd, old, offset)
                        restored += len(old)
                    os.ftruncate(fd, entry["size"])
                    files += 1
                finally:
                    os.close(fd)
            self.undo.clear()
            return files, restored

    # --- files ----------------------------------------------------------------------------------

    # Every backing descriptor is read-write, whatever the caller asked: the kernel reads pages
    # (mmap, sendfile, readahead) and writes dirty pages back through any open handle of the file.
    # Without O_APPEND: the kernel gives every write its offset.
    def open(self, path, flags):
        return os.open(self._full(path), (flags & ~(os.O_APPEND | os.O_ACCMODE)) | os.O_RDWR)

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        with self.mutex:
            if self.failed:
                return len(data)
            entry = self._entry(path, fh)
            self._save(entry, fh, offset, len(data))
            return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            if self.failed:
                return
            fd = fh if fh is not None else os.open(self._full(path), os.O_RDWR)
            try:
                entry = self._entry(path, fd)
                current = os.fstat(fd).st_size
                if length < current:
                    self._save(entry, fd, length, current - length)
                os.ftruncate(fd, length)
            finally:
                if fh is None:
                    os.close(fd)

    def fsync(self, path, datasync, fh):
        with self.mutex:
            if not self.failed:
                self.undo.pop(path, None)
                os.fsync(fh)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    # --- namespace (durable at once) --------------------------------------------------------------

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        return {key: getattr(st, key) for key in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime",
                                                    "st_nlink", "st_size", "st_uid", "st_blocks")}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid)

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def mknod(self, path, mode, dev):
        os.mknod(self._full(path), mode, dev)

    def unlink(self, path):
        with self.mutex:
            os.unlink(self._full(path))
            self.undo.pop(path, None)

    def rename(self, old, new):
        with self.mutex:
            os.rename(self._full(old), self._full(new))
            self.undo.pop(new, None)
            for path in [p for p in self.undo if p == old or p.startswith(old + "/")]:
                self.undo[new + path[len(old):]] = self.undo.pop(path)

    def link(self, target, name):
        os.link(self._full(name), self._full(target))

    def symlink(self, name, target):
        os.symlink(target, self._full(name))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        return {key: getattr(st, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                    "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def utimens(self, path, times=None):
        os.utime(self._full(path), times)

    def fsyncdir(self, path, datasync, fh):
        return 0


def watch(fs, request):
    done = request + ".done"
    while True:
        if fs.writeback_s > 0:
            fs.write_back()
        if os.path.exists(request):
            files, restored = fs.power_fail()
            with open(request, "w", encoding="utf-8") as handle:
                handle.write(f"{files} files reverted, {restored} bytes restored\n")
            os.replace(request, done)
        time.sleep(0.05)


def main():
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = LazyFS(backing, float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    threading.Thread(target=watch, args=(fs, os.path.realpath(backing) + ".powerfail"), daemon=True).start()
    FUSE(fs, mountpoint, foreground=True, nothreads=False, big_writes=True, max_write=131072)


if __name__ == "__main__":
    main()
