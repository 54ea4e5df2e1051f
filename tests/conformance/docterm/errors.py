"""The docs-only terminal's one exception.

    Exception
     └── Refused(reason, detail)    input from outside (a message, a URL, a configuration)
                                    that breaks docs/protocol.md; `reason` is a code of its
                                    section 6 (e.g. message_malformed, mac_invalid)

Programmer errors (sealing a record this terminal built wrong) are assertions, as the house
style asks: check before signing.
"""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
