"""Top functions of a py-spy profile (`BENCH_PROFILE=ingest`: collapsed stacks, idle included):
`python -m tests.benchmarks.profile_top FILE [--root ConsumerLoop.run] [--top 25]`.

Only samples under ``--root`` count (the consumer loop: start-up and other threads left out). ``inclusive``: share
of samples with the function anywhere on the stack; ``self``: share with it on top (waits show as the call that
blocks, e.g. `poll` or `execute`)."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    names = []
    for frame in stack.split(";")[1:]:  # the first is the thread
        match = _FRAME.match(frame)
        names.append(f"{match['name']} ({match['file']})" if match else frame)
    return names, int(count)


def top(path: Path, root: str, limit: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        names, count = frames(line)
        if not any(n.startswith(root + " ") for n in names):
            continue
        start = next(i for i, n in enumerate(names) if n.startswith(root + " "))
        below = names[start:]
        total += count
        for name in set(below):
            inclusive[name] += count
        own[below[-1]] += count
    lines = [f"{total} samples under {root}", "", f"{'inclusive':>9}  {'self':>6}  function"]
    for name, count in inclusive.most_common(limit):
        lines.append(f"{count / total:>9.1%}  {own[name] / total:>6.1%}  {name}")
    lines += ["", "top by self:"]
    for name, count in own.most_common(limit):
        lines.append(f"{count / total:>9.1%}  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--root", default="ConsumerLoop.run")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(top(args.file, args.root, args.top))


if __name__ == "__main__":
    main()
