"""What a fault test sent and what came back, checked against PostgreSQL afterwards.

`History` holds every command the harness sent (id, kind, payload) and every result a
`read_committed` reader saw on the results topic, counted per command id so that a duplicate
shows. `check` then states the guarantees as properties of that history and of the final
database, and returns every violation it finds (an empty list when the run was correct):

1. every command sent has exactly one committed result, and no result answers a command
   that was never sent; no result is an error a healthy run cannot produce (a database or
   broker outage is never answered with an error) and nothing reached the dead-letter topic;
2. no number is reserved by two commands, every successful reserve names a number that the
   database shows reserved by that command, for that variant, type and document, and every
   reservation in the database has its successful result;
3. every number of every successful load is stored exactly once, byte for byte, under the
   load's variant and type; nothing else is stored; each load stored as many as it says;
4. the free, reserved and used numbers add up to what the loads stored, and the reserved
   and used ones to the successful reserves and mark-useds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from schemas.commands import CommandName

# Refusals a correct worker gives for this workload. Anything else (INTERNAL_ERROR,
# VALIDATION_ERROR, COMMAND_ID_REUSED ...) is a violation: the workload sends only valid
# commands with fresh ids, and an outage must never turn into an error.
BUSINESS_REFUSALS = {
    CommandName.LOAD_JSON: {"CONFLICT"},
    CommandName.LOAD_EXCEL: {"CONFLICT"},
    CommandName.LIST: set[str](),
    CommandName.RESERVE: {"NO_FREE_NUMBER"},
    CommandName.MARK_USED: {"NOT_FOUND", "ALREADY_USED", "VARIANT_MISMATCH"},
}


@dataclass(frozen=True)
class Entry:
    """One number of a load: variant, number, type."""

    variant_id: str
    number: str
    number_type: str


@dataclass
class SentCommand:
    command_id: str
    name: CommandName
    body: dict[str, Any]
    key: str
    # Loads only: the numbers the command carries (for load-excel, the rows of its file).
    entries: list[Entry] = field(default_factory=list)
    sent_at: float = field(default_factory=time.monotonic)


@dataclass
class History:
    test: str
    sent: dict[str, SentCommand] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stray: list[dict[str, Any]] = field(default_factory=list)
    header_mismatches: list[str] = field(default_factory=list)
    dead_letters: int = 0
    faults: list[str] = field(default_factory=list)
    faults_injected: int = 0
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    # ------------------------------------------------------------------ recording

    def record_sent(self, command: SentCommand) -> None:
        assert command.command_id not in self.sent, f"harness reused {command.command_id}"
        self.sent[command.command_id] = command

    def record_result(self, header_id: str | None, body: dict[str, Any]) -> None:
        command_id = str(body.get("commandId"))
        if header_id != command_id:
            self.header_mismatches.append(f"header {header_id!r} but body {command_id!r}")
        if command_id not in self.sent:
            self.stray.append(body)
            return
        self.results.setdefault(command_id, []).append(body)

    def fault(self, description: str, count: int = 1) -> None:
        """Record a fault injected (`count` of them, e.g. sessions cut at once)."""
        elapsed = time.monotonic() - self.started
        self.faults.append(f"{elapsed:5.1f}s {description}")
        self.faults_injected += count

    def note(self, text: str) -> None:
        self.notes.append(text)

    def missing(self) -> list[str]:
        return [cid for cid in self.sent if cid not in self.results]

    def result_of(self, command_id: str) -> dict[str, Any] | None:
        got = self.results.get(command_id)
        return got[0] if got else None

    @property
    def result_count(self) -> int:
        return sum(len(r) for r in self.results.values()) + len(self.stray)

    # ------------------------------------------------------------------ figures

    def figures(self, violations: list[str]) -> str:
        kinds = Counter(c.name.value for c in self.sent.values())
        outcomes = Counter(
            "ok" if r[0].get("success") else r[0].get("error", {}).get("code", "?")
            for r in self.results.values()
        )
        duplicated = sum(1 for r in self.results.values() if len(r) > 1)
        elapsed = time.monotonic() - self.started
        return (
            f"[faults] {self.test}: commands sent {len(self.sent)} "
            f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
            f"faults injected {self.faults_injected}; "
            f"results {self.result_count} "
            f"(commands answered {len(self.results)}, duplicated {duplicated}, "
            f"missing {len(self.missing())}, stray {len(self.stray)}; "
            f"{', '.join(f'{k} {n}' for k, n in sorted(outcomes.items()))}); "
            f"dead letters {self.dead_letters}; "
            f"violations {len(violations)}; {elapsed:.1f}s"
        )

    def report(self, violations: list[str], limit: int = 40) -> str:
        lines = [self.figures(violations)]
        lines += [f"  fault  {f}" for f in self.faults]
        lines += [f"  note   {n}" for n in self.notes]
        lines += [f"  VIOLATION {v}" for v in violations[:limit]]
        if len(violations) > limit:
            lines.append(f"  ... and {len(violations) - limit} more violations")
        return "\n".join(lines)

    # ------------------------------------------------------------------ the properties

    async def check(self, db: asyncpg.Connection) -> list[str]:
        rows = await db.fetch(
            "SELECT unique_number, convert_to(unique_number, 'UTF8') AS raw, variant_id,"
            " number_type, is_reserved, is_used, purchase_order, physical_set,"
            " loaded_by_command, reserved_by_command, used_by_command FROM unique_numbers"
        )
        stored = {r["unique_number"]: r for r in rows}
        violations: list[str] = []
        violations += self._one_result_each()
        violations += self._no_number_twice(stored)
        violations += self._loads_stored(stored, len(rows))
        violations += self._counts_add_up(stored)
        violations += self._lists_plausible(stored)
        return violations

    def _one_result_each(self) -> list[str]:
        out: list[str] = []
        for cid, command in self.sent.items():
            got = self.results.get(cid, [])
            if not got:
                out.append(f"lost: {command.name} {cid} has no committed result")
                continue
            if len(got) > 1:
                same = all(r == got[0] for r in got)
                out.append(
                    f"duplicated: {command.name} {cid} has {len(got)} committed results"
                    f" ({'identical' if same else 'DIFFERENT'})"
                )
            result = got[0]
            if result.get("command") != command.name.value:
                out.append(f"{cid}: result for {result.get('command')!r}, sent {command.name}")
            if not result.get("success"):
                code = result.get("error", {}).get("code")
                if code not in BUSINESS_REFUSALS[command.name]:
                    message = result.get("error", {}).get("message", "")[:200]
                    out.append(f"error: {command.name} {cid} answered {code}: {message}")
        out += [f"stray result for a command never sent: {b}" for b in self.stray[:5]]
        out += [f"command-id header differs from the body: {m}" for m in self.header_mismatches]
        if self.dead_letters:
            out.append(f"{self.dead_letters} records on the dead-letter topic")
        return out

    def _successes(self, name: CommandName) -> list[tuple[SentCommand, dict[str, Any]]]:
        return [
            (command, result)
            for command in self.sent.values()
            if command.name is name
            and (result := self.result_of(command.command_id)) is not None
            and result.get("success")
        ]

    def _no_number_twice(self, stored: dict[str, Any]) -> list[str]:
        out: list[str] = []
        reserves = self._successes(CommandName.RESERVE)
        by_number = Counter(result["uniqueNumber"] for _, result in reserves)
        out += [
            f"reserved twice: {n!r} named by {k} reserve results"
            for n, k in by_number.items()
            if k > 1
        ]
        answered = {}
        for command, result in reserves:
            body = command.body
            variant = body.get("variant_id", body.get("variantId"))
            number_type = body.get("type_unique_number", body.get("type"))
            doc_type, doc_id = body.get("doc_type"), body.get("id")
            number = result["uniqueNumber"]
            answered[number] = command.command_id
            row = stored.get(number)
            where = f"reserve {command.command_id} -> {number!r}"
            if row is None:
                out.append(f"{where}: number not in the database")
                continue
            if not row["is_reserved"] or row["reserved_by_command"] != command.command_id:
                out.append(
                    f"{where}: database shows is_reserved={row['is_reserved']} "
                    f"by {row['reserved_by_command']!r}"
                )
            if (row["variant_id"], row["number_type"]) != (variant, number_type):
                out.append(f"{where}: stored as {row['variant_id']}/{row['number_type']}")
            want_po = doc_id if doc_type == "PURCHASE_ORDER" else ""
            want_ps = doc_id if doc_type == "PHYSICAL_SET_ORDER" else ""
            if (row["purchase_order"], row["physical_set"]) != (want_po, want_ps):
                out.append(
                    f"{where}: document stored as purchaseOrder={row['purchase_order']!r} "
                    f"physicalSet={row['physical_set']!r}, sent {doc_type} {doc_id!r}"
                )
            if (result.get("docType"), result.get("id")) != (doc_type, doc_id):
                out.append(f"{where}: result names {result.get('docType')} {result.get('id')}")
            if (result.get("variantId"), result.get("type")) != (variant, number_type):
                out.append(f"{where}: result names {result.get('variantId')}/{result.get('type')}")
        for number, row in stored.items():
            by = row["reserved_by_command"]
            if row["is_reserved"] and answered.get(number) != by:
                out.append(
                    f"reservation without its result: {number!r} reserved by {by!r}, "
                    f"which has result {self.result_of(by) if by else None}"
                )
        return out

    def _loads_stored(self, stored: dict[str, Any], total_rows: int) -> list[str]:
        out: list[str] = []
        loads = self._successes(CommandName.LOAD_JSON) + self._successes(CommandName.LOAD_EXCEL)
        loaded_by = Counter(row["loaded_by_command"] for row in stored.values())
        successful_ids = set()
        for command, result in loads:
            successful_ids.add(command.command_id)
            distinct = {e.number for e in command.entries}
            if result["loaded"] + result["alreadyLoaded"] != len(distinct):
                out.append(
                    f"load {command.command_id}: loaded {result['loaded']} + already "
                    f"{result['alreadyLoaded']} != {len(distinct)} numbers sent"
                )
            if loaded_by[command.command_id] != result["loaded"]:
                out.append(
                    f"load {command.command_id}: result says {result['loaded']} loaded, the "
                    f"database holds {loaded_by[command.command_id]} loaded by it"
                )
            for entry in command.entries:
                row = stored.get(entry.number)
                if row is None:
                    out.append(f"load {command.command_id}: {entry.number!r} not stored")
                    continue
                if bytes(row["raw"]) != entry.number.encode("utf-8"):
                    out.append(f"load {command.command_id}: {entry.number!r} stored altered")
                if (row["variant_id"], row["number_type"]) != (entry.variant_id, entry.number_type):
                    out.append(
                        f"load {command.command_id}: {entry.number!r} stored under "
                        f"{row['variant_id']}/{row['number_type']}, sent for "
                        f"{entry.variant_id}/{entry.number_type}"
                    )
        for number, row in stored.items():
            if row["loaded_by_command"] not in successful_ids:
                out.append(
                    f"{number!r} stored by {row['loaded_by_command']!r}, which has no "
                    "successful load result"
                )
        total_loaded = sum(result["loaded"] for _, result in loads)
        if total_rows != total_loaded:
            out.append(f"{total_rows} numbers stored, the load results add up to {total_loaded}")
        return out

    def _counts_add_up(self, stored: dict[str, Any]) -> list[str]:
        out: list[str] = []
        rows = list(stored.values())
        free = sum(1 for r in rows if not r["is_reserved"] and not r["is_used"])
        reserved = sum(1 for r in rows if r["is_reserved"] and not r["is_used"])
        used = sum(1 for r in rows if r["is_used"])
        loads = self._successes(CommandName.LOAD_JSON) + self._successes(CommandName.LOAD_EXCEL)
        loaded = sum(result["loaded"] for _, result in loads)
        if free + reserved + used != loaded:
            out.append(f"free {free} + reserved {reserved} + used {used} != loaded {loaded}")
        ever_reserved = sum(1 for r in rows if r["is_reserved"])
        reserves = len(self._successes(CommandName.RESERVE))
        if ever_reserved != reserves:
            out.append(f"{ever_reserved} numbers reserved, {reserves} successful reserve results")
        mark_used = self._successes(CommandName.MARK_USED)
        if used != len(mark_used):
            out.append(f"{used} numbers used, {len(mark_used)} successful mark-used results")
        for command, result in mark_used:
            row = stored.get(result["uniqueNumber"])
            if row is None or not row["is_used"] or row["used_by_command"] != command.command_id:
                out.append(
                    f"mark-used {command.command_id} -> {result['uniqueNumber']!r}: database "
                    f"shows {None if row is None else (row['is_used'], row['used_by_command'])}"
                )
        self.note(
            f"final counts: loaded {loaded} = free {free} + reserved {reserved} + used {used}"
        )
        return out

    def _lists_plausible(self, stored: dict[str, Any]) -> list[str]:
        """A list is answered afresh, so its content is of its moment; but numbers are never
        deleted, and reserved or used never reverts: what it showed must still hold."""
        out: list[str] = []
        for command, result in self._successes(CommandName.LIST):
            variant = command.body["variantId"]
            for item in result["uniqueNumbers"]:
                row = stored.get(item["uniqueNumber"])
                where = f"list {command.command_id}: {item['uniqueNumber']!r}"
                if row is None or row["variant_id"] != variant:
                    out.append(f"{where} listed for {variant} but not stored under it")
                    continue
                if (item["isReserved"] and not row["is_reserved"]) or (
                    item["isUsed"] and not row["is_used"]
                ):
                    out.append(f"{where} listed reserved/used, no longer so in the database")
                is_used = command.body.get("isUsed")
                if is_used is not None and item["isUsed"] != is_used:
                    out.append(f"{where} listed with isUsed={item['isUsed']}, asked {is_used}")
        return out
