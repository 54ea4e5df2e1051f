"""The board's `socket` module, bridged byte for byte to a real TCP socket in the harness.

Runs on real MicroPython, mounted as /lib/socket.py and /lib/usocket.py (this WebAssembly
port has no socket module of its own). umqtt.simple uses it exactly as it uses a board's
socket: getaddrinfo, socket(), connect, read/write (and recv/send), setblocking,
settimeout, close. Each call is one request on the `--rpc` pipe; the CPython side
(tools/mpy/socket_bridge.py) holds the real socket and answers as MicroPython's socket does:

    read(n)   blocking: n bytes, fewer only at end of stream (b"" at once if it has ended);
              OSError(ETIMEDOUT) when the timeout passes first
              non-blocking: what is there (up to n), or None when nothing is
    write(b)  every byte (blocking), or OSError(ETIMEDOUT)
    errors    OSError(errno) with the host's errno (ECONNREFUSED, ECONNRESET, ...)

Bytes travel as hex on the pipe; the broker sees exactly the bytes MicroPython wrote. A read
brings along what else has already arrived (as a board's TCP stack holds received bytes
until they are read), kept here for the next reads: umqtt.simple reads a packet a few
bytes at a time, and each trip over the pipe costs far more than a board's read.
"""

from host_seams import call

AF_INET = 2
SOCK_STREAM = 1
IPPROTO_TCP = 6


def getaddrinfo(host, port, af=0, kind=0, proto=0, flags=0):
    # The harness resolves the name when it connects, as the board's resolver would.
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


class socket:  # noqa: N801 (the name a board's socket module uses)
    def __init__(self, af=AF_INET, kind=SOCK_STREAM, proto=IPPROTO_TCP):
        self._id = call("sock.open")
        self._timeout_s = None  # None: blocking without limit; 0: non-blocking
        self._received = b""  # arrived and not read yet

    def connect(self, address):
        call("sock.connect", id=self._id, host=address[0], port=address[1],
             timeout_s=self._timeout_s)

    def settimeout(self, seconds):
        self._timeout_s = seconds

    def setblocking(self, flag):
        self._timeout_s = None if flag else 0

    def _take(self, n, whole):
        if len(self._received) >= n or (self._received and (not whole or self._timeout_s == 0)):
            data, self._received = self._received[:n], self._received[n:]
            return data
        wanted = n - len(self._received)
        data = call("sock.read" if whole else "sock.recv", id=self._id, n=wanted,
                    timeout_s=self._timeout_s)
        if data is None:
            return None
        self._received += bytes.fromhex(data)
        data, self._received = self._received[:n], self._received[n:]
        return data

    def read(self, n):
        return self._take(n, True)

    def recv(self, n):
        return self._take(n, False)

    def readinto(self, buffer, n=None):
        data = self.read(len(buffer) if n is None else n)
        if data is None:
            return None
        buffer[:len(data)] = data
        return len(data)

    def write(self, data, n=None):
        if isinstance(data, str):  # a board's socket writes a str as its UTF-8 bytes
            data = data.encode()
        data = bytes(data) if n is None else bytes(data[:n])
        return call("sock.write", id=self._id, hex=data.hex(), timeout_s=self._timeout_s)

    def send(self, data):
        return self.write(data)

    def sendall(self, data):
        self.write(data)

    def close(self):
        call("sock.close", id=self._id)
