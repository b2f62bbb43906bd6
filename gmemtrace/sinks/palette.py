"""The one palette: the colour of each shareability state, wherever a page is drawn (the
terminal's named colours, which follow its theme; the same hues in hex for HTML and plots)."""

from __future__ import annotations

from gmemtrace.model.state import Share

STATE_COLOUR = {Share.SHARED: "green", Share.PRIVATE: "magenta", Share.UNKNOWN: "grey50"}
STATE_HEX = {Share.SHARED: "#2e9d3a", Share.PRIVATE: "#b03ab0", Share.UNKNOWN: "#9a9a9a"}
ABSENT_HEX = "#ffffff"  # no page there (plots: beyond the file's end at that time)
OK_STYLE, ERROR_STYLE = "green", "yellow"  # a request's result: done, or an errno
