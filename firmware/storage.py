"""Journal storage on a filesystem (littlefs on a board, any POSIX file on a host).

The journal needs three operations: read everything, append durably, replace atomically.
`MemoryStorage` is the in-memory fake for unit tests; it can be told to tear a write after
a given number of bytes to simulate a power cut.
"""

import os


class FileStorage:
    def __init__(self, path):
        self.path = path
        self._temporary = path + ".new"

    def read_all(self):
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except OSError:
            return b""

    def append(self, data):
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            if hasattr(os, "fsync"):
                os.fsync(handle.fileno())

    def replace(self, data):
        with open(self._temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            if hasattr(os, "fsync"):
                os.fsync(handle.fileno())
        os.rename(self._temporary, self.path)


class PowerCut(Exception):
    """Raised by MemoryStorage when its simulated power cut happens."""


class MemoryStorage:
    def __init__(self, data=b""):
        self.data = bytearray(data)
        self.cut_after_bytes = None  # bytes that may still be written before the power fails

    def read_all(self):
        return bytes(self.data)

    def append(self, data):
        if self.cut_after_bytes is not None and len(data) > self.cut_after_bytes:
            self.data.extend(data[: self.cut_after_bytes])
            self.cut_after_bytes = 0
            raise PowerCut()
        if self.cut_after_bytes is not None:
            self.cut_after_bytes -= len(data)
        self.data.extend(data)

    def replace(self, data):
        if self.cut_after_bytes is not None and len(data) > self.cut_after_bytes:
            # An interrupted rename-replace leaves the old file whole.
            self.cut_after_bytes = 0
            raise PowerCut()
        self.data = bytearray(data)
