"""`python -m bench`: the worker's throughput, latency and scale against the raw limits.

It starts nothing itself but the worker: `make bench` starts Kafka and PostgreSQL and passes
their addresses (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL). Every scenario gets a database and
topics of its own, all removed at the end. A benchmark, not a test: it exits 0 whatever
it measured (and 1 only when it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bench.report import Report, machine_info
from bench.scenarios import list_pages, load_excel, load_json, reserve, scale
from bench.stack import BenchDatabases, Servers, Stack
from worker.logging import configure_logging

ROOT = Path(__file__).resolve().parent.parent
METHOD_NOTES = [
    "End to end means from the benchmark's producer sending a command to its consumer reading "
    "the result (read_committed, so only after the worker's Kafka transaction commits); the "
    "worker runs as `python -m worker run` with its default settings, 4 partitions a topic.",
    "load-json ceiling: asyncpg COPY of the same rows, one COPY and one commit per 10,000 rows "
    "(as the commands), into an empty table with the worker's schema (unique constraint and "
    "indexes), over 1 and over 4 connections; the faster counts. The bare table has no index, "
    "no constraint: the physical limit of COPY here.",
    "reserve ceiling: the worker's own statements for the same 50,000 commands, run directly "
    "with asyncpg over one connection per partition, 500 commands a transaction (what a "
    "partition's lane takes at once from a backlog, KAFKA_MAX_BATCH_RECORDS: claim the ids, "
    "reserve for all, save the results, commit); one transaction per command is shown beside "
    "it.",
    "Open loop: commands are sent at a fixed rate whatever the results do, and latency counts "
    "from the moment each was due, so a stall of the sender cannot hide a stall of the worker. "
    "Its ceiling is the same open loop, on topics of its own, against `python -m bench.echo` "
    "(the worker's transport with a fixed answer instead of decoding and the database).",
    "CPU split: each process's CPU time over the interval (psutil), in % of one core (200% is "
    "both cores): Kafka's JVM, PostgreSQL's processes, the worker (or the echo) and its "
    "children, the benchmark's own client, and the rest.",
    "scale: a database per size, filled with COPY straight into the worker's table (not "
    "through Kafka): half of all rows in one variant, interleaved with about 2,000 others, half "
    "of all rows used. Each size has its own worker, and the sizes are measured in interleaved "
    "rounds (so that the machine's changing load falls on all alike): end to end at 200 "
    "commands/s offered, and database only (the worker's service called directly, one command "
    "at a time; a reserve is then one transaction with its commit).",
]
SCENARIOS = ("load-json", "load-excel", "reserve", "scale", "list")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of every scenario"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (list runs with scale)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where the Markdown goes (default docs/benchmarks.md, bench-results/ with --quick)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=(
            "run the worker under py-spy (collapsed stacks in bench-results/; "
            "summarise one with python -m bench.profile FILE)"
        ),
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=10_000_000,
        help="largest table of the scale scenario (default 10,000,000)",
    )
    parser.add_argument(
        "--worker-source",
        type=Path,
        default=None,
        help="run the worker from another checkout (to compare two versions)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: write the Markdown again from the JSON copy next to it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and topics")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def plan(
    args: argparse.Namespace, report: Report, free_gb: float
) -> list[tuple[str, Callable[[Stack], Awaitable[None]]]]:
    """The scenarios to run, each a function of its stack, at full or --quick size."""
    quick = args.quick
    steps: list[tuple[str, Callable[[Stack], Awaitable[None]]]] = []
    if "load-json" in args.scenarios:
        options = load_json.Options(
            numbers=20_000 if quick else 1_000_000, per_command=2_000 if quick else 10_000
        )
        steps.append(("loadjson", lambda s: load_json.run(s, report, options)))
    if "load-excel" in args.scenarios:
        excel = load_excel.Options(
            xls_rows=2_000 if quick else 65_535, xlsx_rows=5_000 if quick else 200_000
        )
        steps.append(("loadexcel", lambda s: load_excel.run(s, report, excel)))
    if "reserve" in args.scenarios:
        reserving = reserve.Options(
            commands=2_000 if quick else 50_000,
            open_loop_rate=1_000,
            open_loop_seconds=3 if quick else 30,
        )
        steps.append(("reserve", lambda s: reserve.run(s, report, reserving)))
    if "scale" in args.scenarios or "list" in args.scenarios:
        sizes = [10_000, 100_000] if quick else [10_000, 1_000_000, args.max_rows]
        scaling = scale.Options(
            sizes=sizes,
            measure_scale="scale" in args.scenarios,
            list_offsets=[0, 1_000, 10_000] if quick else list_pages.OFFSETS,
            measure_list="list" in args.scenarios,
        )
        need = sizes[-1] * 600 / 2**30  # table, indexes, WAL: about 600 bytes a row at most
        if need > free_gb * 0.8:
            report.notes.append(f"scale: skipped, {need:.0f} GiB needed and {free_gb:.0f} GiB free")
        else:
            steps.append(("scale", lambda s: scale.run(s, report, scaling)))

    return steps


def render_only(markdown: Path) -> int:
    Report.load(markdown.with_suffix(".json")).write(markdown, markdown.with_suffix(".json"))
    print(f"{markdown} written from {markdown.with_suffix('.json')}")
    return 0


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure_logging("console", "WARNING")
    if args.render_only:
        return render_only(args.output or ROOT / "docs" / "benchmarks.md")
    servers = Servers.from_env()
    run_id = uuid.uuid4().hex[:6]
    run_dir = ROOT / "bench-results" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    databases = BenchDatabases(servers, run_id)
    command = "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else "")
    report = Report(command=command, started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    conn = await asyncpg.connect(servers.database_url)
    report.machine = machine_info(await conn.fetchval("SHOW server_version"))
    await conn.close()
    free_gb = shutil.disk_usage(ROOT).free / 2**30
    print(f"bench run {run_id}: scenarios {', '.join(args.scenarios)}; {free_gb:.0f} GiB free")
    started = time.perf_counter()

    steps = plan(args, report, free_gb)
    report.notes.extend(METHOD_NOTES)

    try:
        for name, step in steps:
            stack = Stack(
                servers,
                databases,
                run_dir,
                name,
                profile=args.profile,
                worker_source=args.worker_source,
            )
            print(f"== {name}")
            try:
                await step(stack)
            except Exception as exc:  # a benchmark reports what failed and goes on
                report.notes.append(f"{name}: failed with {type(exc).__name__}: {exc}")
                print(f"{name} failed: {exc!r}", file=sys.stderr)
            finally:
                if args.keep:
                    stack.stop_worker()
                else:
                    await stack.teardown()
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                await databases.drop_all()

    report.runtime_s = time.perf_counter() - started
    report.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.output is not None:
        markdown = args.output
    elif args.quick or set(args.scenarios) != set(SCENARIOS):
        markdown = run_dir / "benchmarks.md"
    else:
        markdown = ROOT / "docs" / "benchmarks.md"
    report.write(markdown, markdown.with_suffix(".json"))
    print()
    print(report.table())
    print(f"\n{markdown} written; total runtime {report.runtime_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
