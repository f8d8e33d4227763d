"""Salesforce's unified diffs of long text fields (CDC "Sending Data Differences for Fields of Updated
Records"): `--- \\n+++ <sha256 of the new value>\\n@@ -l,n +l,n @@` hunks over lines of the old value."""

from __future__ import annotations

import hashlib
import re

from worker.domain.errors import DiffMismatch

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_unified_diff(previous: str, patch: str) -> str:
    """The new value: ``patch`` applied to ``previous``, lines re-joined with CRLF, checked against the hash."""
    lines = patch.replace("\r\n", "\n").split("\n")
    if len(lines) < 2 or not lines[0].startswith("---") or not lines[1].startswith("+++"):
        raise DiffMismatch("not a unified diff (no ---/+++ header)")
    expected = lines[1][3:].strip().lower()
    old = previous.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    cursor = 0
    i = 2
    while i < len(lines):
        match = _HUNK.match(lines[i])
        if not match:
            if lines[i] == "":
                i += 1
                continue
            raise DiffMismatch(f"unexpected diff line {lines[i][:40]!r}")
        start = int(match[1]) - (0 if match[2] == "0" else 1)
        if start < cursor or start > len(old):
            raise DiffMismatch("hunk out of order or past the end of the stored value")
        out += old[cursor:start]
        cursor = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            tag, text = line[:1], line[1:]
            if tag in (" ", "-"):
                if cursor >= len(old) or old[cursor] != text:
                    raise DiffMismatch(f"context does not match the stored value at line {cursor + 1}")
                cursor += 1
                if tag == " ":
                    out.append(text)
            elif tag == "+":
                out.append(text)
            elif line == "" or line.startswith("\\"):
                pass
            else:
                raise DiffMismatch(f"unexpected diff line {line[:40]!r}")
            i += 1
    out += old[cursor:]
    result = "\r\n".join(out)
    if expected and hashlib.sha256(result.encode("utf-8")).hexdigest() != expected:
        raise DiffMismatch("the patched value does not hash to the diff's +++ hash")
    return result
