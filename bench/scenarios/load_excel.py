"""load-excel: a 65,535-row .xls and a 200,000-row .xlsx; seconds, rows/s, worker peak RSS."""

from __future__ import annotations

import base64
import random
import time
from dataclasses import dataclass

from bench.data import CodeFactory, numbers_for_variants, variant_ids, xls_bytes, xlsx_bytes
from bench.report import Figure, Report, rate
from bench.stack import Stack, bench_client, encode_command, new_id

RSS_LIMIT_MB = 300


@dataclass(frozen=True)
class Options:
    xls_rows: int
    xlsx_rows: int
    variants: int = 3000


async def run(stack: Stack, report: Report, options: Options) -> None:
    factory = CodeFactory(seed=23)
    variants = variant_ids(options.variants)
    rng = random.Random(5)
    files: list[tuple[str, int, bytes]] = []
    for kind, rows_wanted, write in (
        ("xls", options.xls_rows, xls_bytes),
        ("xlsx", options.xlsx_rows, xlsx_bytes),
    ):
        print(f"load-excel: writing a {rows_wanted:,}-row .{kind}")
        sheet = [
            (v, c, "UIT") for v, c in numbers_for_variants(factory, variants, rows_wanted, rng)
        ]
        files.append((kind, len(sheet), write(sheet)))

    settings = await stack.setup()
    worker = stack.start_worker()
    async with bench_client(settings) as client:
        await stack.ready(client)
        assert worker.memory is not None
        for kind, rows, content in files:
            command_id = f"bench-excel-{kind}-{new_id()[:8]}"
            payload = encode_command(
                {"fileName": f"codes.{kind}", "upFile": base64.b64encode(content).decode()},
                command_id,
            )
            worker.memory.reset()
            idle = worker.memory.peak()
            started = time.perf_counter()
            await client.send("load-excel", payload, key=None, command_id=command_id)
            done = await client.wait_for([command_id], timeout=900)
            seconds = client.results.read_at.get(command_id, time.perf_counter()) - started
            peak_mb = worker.memory.peak() / 2**20
            own_mb = worker.memory.high_water_mark() / 2**20
            child_mb = worker.memory.peak_children / 2**20
            body = client.results.bodies.get(command_id, {})
            ok = done and body.get("success") is True and body.get("loaded") == rows
            outcome = "" if ok else f"; result {str(body)[:300]}"
            report.add(
                Figure(
                    scenario=f"load-excel, {rows:,}-row .{kind} ({len(content) / 2**20:.1f} MiB)",
                    figure="seconds, rows/s, peak RSS (worker + its reader child)",
                    measured=(
                        f"{seconds:.1f} s, {rate(rows / seconds)}, peak RSS {peak_mb:.0f} MB"
                        + outcome
                    ),
                    reference=(
                        f"worker RSS before the command {idle / 2**20:.0f} MB; its own peak "
                        f"{own_mb:.0f} MB, its reader child's own pages at most {child_mb:.0f} MB"
                    ),
                    target=f"peak RSS <= {RSS_LIMIT_MB} MB",
                    met=ok and peak_mb <= RSS_LIMIT_MB,
                    data={
                        "rows": rows,
                        "file_bytes": len(content),
                        "seconds": seconds,
                        "rows_per_s": rows / seconds,
                        "peak_rss_mb": peak_mb,
                        "worker_own_peak_rss_mb": own_mb,
                        "reader_child_peak_uss_mb": child_mb,
                        "rss_before_mb": idle / 2**20,
                        "result": body if not ok else {"loaded": body.get("loaded")},
                    },
                )
            )
    stack.stop_worker()
