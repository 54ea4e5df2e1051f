"""micropython-lib's umqtt.simple, pinned, for the tests that run the board's MQTT client.

    python -m tools.mpy.umqtt_package          # install it if missing (scripts/bootstrap.sh)
    UMQTT_PACKAGE_DIRECTORY / "umqtt"           # mounted at /lib/umqtt on MicroPython

The only registry copy reachable from here is PyPI's `micropython-umqtt.simple` (the sdist
micropython-lib published for upip, MicroPython's installer of the time). It has no setup.py,
so pip cannot install it; this module does what upip did: the package index pip is set up
to use ($PIP_INDEX_URL, else pip's own default) lists the file on its simple page (PEP 503),
the file is checked against the pinned sha256 and `umqtt/simple.py` is unpacked (with its
PKG-INFO, which states the MIT licence and the project's address). Nothing of it is
committed to this repository.

A board gets umqtt.simple from `mip install umqtt.simple` (a newer release, whose connect
takes a socket timeout) or frozen into its MicroPython image (whatever release that image
froze); firmware/net_umqtt.py works with both generations.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from tools.mpy.runner import REPO_ROOT

UMQTT_DISTRIBUTION = "micropython-umqtt.simple"
UMQTT_VERSION = "1.3.4"
UMQTT_SDIST_SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
UMQTT_PACKAGE_DIRECTORY = REPO_ROOT / ".venv" / "micropython-lib" / f"umqtt.simple-{UMQTT_VERSION}"
UMQTT_SDIST_NAME = f"{UMQTT_DISTRIBUTION}-{UMQTT_VERSION}.tar.gz"
DOWNLOAD_TIMEOUT_S = 60
_WANTED_MEMBERS = {"umqtt/simple.py": "umqtt/simple.py", "PKG-INFO": "PKG-INFO"}
_STAMP_NAME = "sdist.sha256"


class UmqttUnavailable(RuntimeError):
    """The pinned umqtt.simple is not installed: run scripts/bootstrap.sh."""


def installed() -> bool:
    stamp = UMQTT_PACKAGE_DIRECTORY / _STAMP_NAME
    return (UMQTT_PACKAGE_DIRECTORY / "umqtt" / "simple.py").is_file() and stamp.is_file() \
        and stamp.read_text().strip() == UMQTT_SDIST_SHA256


def umqtt_directory() -> Path:
    """The folder to mount at /lib/umqtt; UmqttUnavailable when bootstrap has not run."""
    if not installed():
        raise UmqttUnavailable(f"{UMQTT_DISTRIBUTION} {UMQTT_VERSION} is not installed: "
                               "run `scripts/bootstrap.sh`")
    return UMQTT_PACKAGE_DIRECTORY / "umqtt"


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
        data: bytes = response.read()
    return data


class _Links(HTMLParser):
    """The file links of a PEP 503 simple page: text -> href."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links[data.strip()] = self._href

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def _index_url() -> str:
    """The simple index pip uses here: $PIP_INDEX_URL, else pip's default."""
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured
    from pip._internal.models.index import PyPI  # pip's own default, not named here

    url: str = PyPI.simple_url
    return url


def install() -> None:
    page_url = _index_url().rstrip("/") + "/" + UMQTT_DISTRIBUTION.replace(".", "-") + "/"
    links = _Links()
    links.feed(_download(page_url).decode("utf-8"))
    href = links.links.get(UMQTT_SDIST_NAME)
    if href is None:
        raise UmqttUnavailable(f"the index lists no {UMQTT_SDIST_NAME}")
    data = _download(urljoin(page_url, href.split("#", 1)[0]))
    digest = hashlib.sha256(data).hexdigest()
    if digest != UMQTT_SDIST_SHA256:
        raise UmqttUnavailable(f"{UMQTT_SDIST_NAME} has sha256 {digest}, "
                               f"not the pinned {UMQTT_SDIST_SHA256}")
    prefix = f"{UMQTT_DISTRIBUTION}-{UMQTT_VERSION}/"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name[len(prefix):] if member.name.startswith(prefix) else ""
            if name.endswith("PKG-INFO"):
                name = "PKG-INFO"
            if name not in _WANTED_MEMBERS or not member.isfile():
                continue
            source = archive.extractfile(member)
            assert source is not None
            target = UMQTT_PACKAGE_DIRECTORY / _WANTED_MEMBERS[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    (UMQTT_PACKAGE_DIRECTORY / _STAMP_NAME).write_text(UMQTT_SDIST_SHA256 + "\n")


def main() -> int:
    if installed():
        return 0
    try:
        install()
    except (OSError, ValueError, KeyError, tarfile.TarError, UmqttUnavailable) as error:
        print(f"umqtt_package: cannot install {UMQTT_DISTRIBUTION} {UMQTT_VERSION}: {error}",
              file=sys.stderr)
        return 1
    print(f"umqtt_package: installed {UMQTT_DISTRIBUTION} {UMQTT_VERSION} "
          f"in {UMQTT_PACKAGE_DIRECTORY.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
