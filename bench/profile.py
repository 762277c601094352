"""`python -m bench.profile FILE [TOP]`: what a py-spy profile (raw collapsed stacks, as
`python -m bench --profile` writes them) spent its time on: own time and time inside each
function, as shares of the samples of the worker's busy threads (idle waits left out)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# Frames in which a thread waits rather than works.
IDLE = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py")
# (uvloop's run_forever waits inside its C code: no Python frame shows the wait)


def summarise(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if any(i in frames[-1] for i in IDLE):
            continue
        count = int(count_text)
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inside[frame] += count
    if not total:
        return "no busy samples"
    lines = [f"{total} busy samples", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "time inside (inclusive):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inside.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` -> `function (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0].rstrip(")")
    return f"{name} ({module})"


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
