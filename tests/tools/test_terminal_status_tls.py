"""`tilltap terminal status` shows a board's broker link, and warns when it is clear text."""

from tools.terminal_status import CLEAR_TEXT_WARNING, render

ANSWER = {"terminal": "T1", "firmware": "1", "config_version": 3, "journal_depth": 0,
          "refused": 0, "uptime_s": 5, "errors": []}


def test_a_clear_text_link_gets_a_warning_line() -> None:
    lines = render({**ANSWER, "tls": False}).splitlines()
    assert lines[-2].split() == ["broker", "link", "clear", "text"]
    assert lines[-1] == CLEAR_TEXT_WARNING


def test_a_tls_link_is_shown_without_a_warning() -> None:
    text = render({**ANSWER, "tls": True})
    assert "TLS, store CA pinned" in text and "WARNING" not in text


def test_a_terminal_that_does_not_report_its_link_shows_no_line_for_it() -> None:
    assert "broker link" not in render(ANSWER)  # the CPython simulator's link
