"""`tilltap terminal status T1 --gateway-url URL`: a technician's view of one terminal.

Asks the gateway (POST /diag/<terminal> on its metrics server, gateway/diag.py) to send the
terminal a signed diag request, and prints the terminal's signed answer, one field a line.
An unknown terminal is the person's mistake (exit 2); a terminal that does not answer in
time, or a gateway out of reach, an outside failure (exit 1).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

from gateway.diag import DIAG_WAIT_MAX_S
from tools.command import OutsideFailure, UsageError

STATUS_WAIT_S = 10.0  # how long the gateway waits for the terminal unless told
HTTP_MARGIN_S = 5.0  # the HTTP call waits this much longer than the gateway does
# What a server that has no diag endpoint answers a POST to it (no JSON error of ours).
NOT_A_GATEWAY = (404, 405, 501)
CLEAR_TEXT_WARNING = ("WARNING: this terminal talks to the broker in clear text (its config "
                      "says broker_tls false): provision it with the store's CA")
# The answer's fields in the order printed, with how each is labelled.
_SHOWN = (("terminal", "terminal"), ("firmware", "firmware"),
          ("config_version", "config version"), ("journal_depth", "journal depth"),
          ("refused", "refused records"), ("heap_free", "free heap (bytes)"),
          ("uptime_s", "uptime"), ("errors", "last errors"))


def wait_seconds(text: str) -> float:
    """A --wait-s value: seconds in (0, DIAG_WAIT_MAX_S], the most the gateway waits."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= DIAG_WAIT_MAX_S:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, {DIAG_WAIT_MAX_S:g}] s")
    return value


def fetch(gateway_url: str, terminal: str, wait_s: float) -> dict[str, Any]:
    """The terminal's verified answer from the gateway; UsageError / OutsideFailure."""
    url = f"{gateway_url.rstrip('/')}/diag/{terminal}?wait_s={wait_s:g}"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=wait_s + HTTP_MARGIN_S) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read()).get("error", "")
        except ValueError:
            detail = ""
        if error.code == 404 and detail == "terminal_unknown":
            raise UsageError(f"terminal {terminal} is not registered at the gateway") from None
        if error.code == 504:
            raise OutsideFailure(f"terminal {terminal} did not answer within {wait_s:g} s "
                                 "(offline, or in a sale the whole time)") from None
        if error.code in NOT_A_GATEWAY and not detail:
            raise UsageError(f"{gateway_url} is not a gateway's metrics server (it answered "
                             f"{error.code}; gateway run --metrics-port)") from None
        raise OutsideFailure(f"the gateway answered {error.code} {detail or error.reason}"
                             ) from None
    except urllib.error.URLError as error:
        raise OutsideFailure(f"gateway {gateway_url} out of reach: {error.reason}") from None
    except (TimeoutError, OSError) as error:
        raise OutsideFailure(f"gateway {gateway_url} out of reach: {error}") from None
    except ValueError:
        raise OutsideFailure(f"gateway {gateway_url} did not answer JSON") from None


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    shown = f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{days}d {shown}" if days else shown


def render(answer: dict[str, Any]) -> str:
    lines = []
    for name, label in _SHOWN:
        value = answer.get(name)
        if name == "uptime_s" and isinstance(value, int):
            text = _uptime(value)
        elif name == "errors":
            text = ", ".join(value) if value else "none"
        elif value is None:
            text = "not reported"  # heap_free: only a MicroPython board knows its heap
        else:
            text = str(value)
        lines.append(f"{label:<18} {text}")
    tls = answer.get("tls")
    if tls is not None:  # only a board's own MQTT client reports its link
        lines.append(f"{'broker link':<18} {'TLS, store CA pinned' if tls else 'clear text'}")
    if tls is False:
        lines.append(CLEAR_TEXT_WARNING)
    return "\n".join(lines)


def status_command(terminal: str, gateway_url: str, wait_s: float = STATUS_WAIT_S) -> int:
    print(render(fetch(gateway_url, terminal, wait_s)))
    return 0
