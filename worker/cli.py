"""Send one command and print its result:

python -m worker.cli reserve '{"variant_id": "1000", "type_unique_number": "UIT"}'
python -m worker.cli load-excel --file codes.xls
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

from schemas.commands import CommandName
from worker.client import CommandClient
from worker.config import Settings


async def _send(name: CommandName, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    async with CommandClient(Settings()) as client:
        return await client.request(name, body, timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m worker.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=[c.value for c in CommandName])
    parser.add_argument("body", nargs="?", default="{}", help="the command as a JSON object")
    parser.add_argument("--file", type=Path, help="load-excel: the .xls/.xlsx file to send")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    body = json.loads(args.body)
    if args.file is not None:
        body.setdefault("fileName", args.file.name)
        body["upFile"] = base64.b64encode(args.file.read_bytes()).decode("ascii")
    result = asyncio.run(_send(CommandName(args.command), body, args.timeout))
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    sys.exit(0 if result.get("success") else 1)


if __name__ == "__main__":
    main()
