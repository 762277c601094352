"""Realistic test data: DataMatrix-like marking codes, variants, spreadsheets.

A Chestny ZNAK code is `01` + a 14-digit GTIN + `21` + a serial (31 characters in its short
form); the full form adds a verification key and a crypto tail after GS separators
(`<GS>91` + 4 characters + `<GS>92` + 44 characters, 85 in all). The generator mixes
short codes, full codes and codes of any length in between, 31 to 120 characters. Every
code holds a counter in its serial, so codes never repeat within a run.
"""

from __future__ import annotations

import base64
import io
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

GS = "\x1d"
# The characters a DataMatrix serial uses (GS1 AI 21: the 82-character set, less a few).
_SERIAL = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!%&'()*+,-./:;<=>?_\""
_BASE = len(_SERIAL)


def _encode(counter: int, width: int) -> str:
    chars = []
    for _ in range(width):
        counter, digit = divmod(counter, _BASE)
        chars.append(_SERIAL[digit])
    return "".join(chars)


@dataclass
class CodeFactory:
    """Unique codes: short (31 characters), full (with GS, 85) and any length up to 120."""

    seed: int = 1
    run: str = ""

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._counter = 0
        # Random text to cut the tails from (cheaper than a random call per character).
        pool = base64.b64encode(self._random.randbytes(1 << 16)).decode()
        self._pool = pool.replace("+", "%").replace("/", "&")
        self._run = _encode(self._random.randrange(_BASE**2), 2) if not self.run else self.run

    def gtin(self, variant_index: int) -> str:
        return f"0{4600000000000 + variant_index * 7919 % 10**12:013d}"

    def code(self, gtin: str) -> str:
        rnd = self._random.random()
        self._counter += 1
        # 13-character serial: run (2) + counter (6, up to 3e11 codes) + random (5).
        offset = self._random.randrange(len(self._pool) - 130)
        pool = self._pool
        serial = self._run + _encode(self._counter, 6) + pool[offset : offset + 5]
        short = f"01{gtin}21{serial}"
        if rnd < 0.55:
            return short  # 31 characters
        if rnd < 0.85:
            # The full form: verification key and a 44-character crypto tail (85 characters).
            key, crypto = pool[offset + 5 : offset + 9], pool[offset + 9 : offset + 53]
            return f"{short}{GS}91{key}{GS}92{crypto}"
        # Anything from 32 to 120 characters, a GS in the longer ones.
        length = self._random.randint(32, 120)
        if length < 45:
            return short + pool[offset + 5 : offset + 5 + length - 31]
        tail = length - 41
        key, crypto = pool[offset + 5 : offset + 9], pool[offset + 9 : offset + 9 + tail]
        return f"{short}{GS}91{key}{GS}92{crypto}"


def variant_ids(count: int, first: int = 100_000) -> list[str]:
    return [str(first + i) for i in range(count)]


def numbers_for_variants(
    factory: CodeFactory, variants: list[str], total: int, rng: random.Random
) -> list[tuple[str, str]]:
    """`total` (variant, code) pairs over `variants`, in a random interleaved order."""
    gtins = {v: factory.gtin(i) for i, v in enumerate(variants)}
    out = []
    for _ in range(total):
        variant = variants[rng.randrange(len(variants))]
        out.append((variant, factory.code(gtins[variant])))
    return out


def load_json_commands(
    factory: CodeFactory, variants: list[str], total: int, per_command: int, seed: int = 7
) -> list[dict[str, object]]:
    """Load commands of `per_command` numbers each, each for a few dozen variants."""
    rng = random.Random(seed)
    gtins = {v: factory.gtin(i) for i, v in enumerate(variants)}
    commands: list[dict[str, object]] = []
    for start in range(0, total, per_command):
        count = min(per_command, total - start)
        picked = rng.sample(variants, k=min(len(variants), max(1, count // 250)))
        items: dict[str, list[dict[str, str]]] = {v: [] for v in picked}
        for n in range(count):
            variant = picked[n % len(picked)]
            items[variant].append({"uniqueNumber": factory.code(gtins[variant]), "type": "UIT"})
        commands.append(
            {"items": [{"variantId": v, "uniqueNumbers": e} for v, e in items.items() if e]}
        )
    return commands


# --- spreadsheets --------------------------------------------------------------------------


def _header() -> tuple[str, str, str]:
    return ("variant_id", "unique_number", "type")


def xls_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    """An .xls (BIFF8) with a header row and `rows`; at most 65,535 rows of data."""
    import xlwt  # noqa: PLC0415 - a dev extra, needed only here

    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("codes")
    for c, text in enumerate(_header()):
        sheet.write(0, c, text)
    for r, row in enumerate(rows, start=1):
        for c, text in enumerate(row):
            sheet.write(r, c, text)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _excel_escape(text: str) -> str:
    """Text as Excel writes it in an .xlsx: GS and other controls as _xHHHH_."""
    text = text.replace("_x", "_x005F_x")
    return "".join(f"_x{ord(ch):04X}_" if ch < " " else ch for ch in text) if GS in text else text


def xlsx_bytes(rows: list[tuple[str, str, str]]) -> bytes:
    """An .xlsx as Excel saves it: text in the shared string table, one sheet."""
    strings: dict[str, int] = {}

    def index(text: str) -> int:
        found = strings.get(text)
        if found is None:
            found = strings[text] = len(strings)
        return found

    parts = []
    for r, row in enumerate([_header(), *rows], start=1):
        a, b, c = (index(t) for t in row)
        parts.append(
            f'<row r="{r}"><c r="A{r}" t="s"><v>{a}</v></c><c r="B{r}" t="s"><v>{b}</v></c>'
            f'<c r="C{r}" t="s"><v>{c}</v></c></row>'
        )
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    xml = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{main}">'
        f'<dimension ref="A1:C{len(rows) + 1}"/><sheetData>{"".join(parts)}</sheetData></worksheet>'
    )
    shared = "".join(
        f'<si><t xml:space="preserve">{xml_escape(_excel_escape(t))}</t></si>' for t in strings
    )
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{ct}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{ct}.sharedStrings+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            f'{xml}<Relationships xmlns="{pkg}">'
            f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{main}" '
            f'xmlns:r="{rel}"><sheets><sheet name="codes" sheetId="1" r:id="rId1"/></sheets>'
            "</workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            f'{xml}<Relationships xmlns="{pkg}">'
            f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/sheet1.xml": sheet,
        "xl/sharedStrings.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{main}" '
            f'count="{3 * (len(rows) + 1)}" uniqueCount="{len(strings)}">{shared}</sst>'
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


def stream_rows(
    factory: CodeFactory,
    *,
    variants: list[str],
    big_variant: str,
    total: int,
    command_id: str,
    chunk: int,
    seed: int,
) -> Iterator[list[tuple[str, str, str, str, bool, bool]]]:
    """Rows for COPY into unique_numbers, half of them in `big_variant`, interleaved at
    random with the others; half of all rows are already used (as in a table in service)."""
    rng = random.Random(seed)
    gtins = {v: factory.gtin(i) for i, v in enumerate(variants)}
    big_gtin = factory.gtin(len(variants) + 1)
    produced = 0
    count_small = len(variants)
    code = factory.code
    rand = rng.random
    rrange = rng.randrange
    while produced < total:
        n = min(chunk, total - produced)
        rows = []
        for _ in range(n):
            if rand() < 0.5:
                variant, gtin = big_variant, big_gtin
            else:
                variant = variants[rrange(count_small)]
                gtin = gtins[variant]
            used = rand() < 0.5
            rows.append((code(gtin), variant, "UIT", command_id, used, used))
        produced += n
        yield rows
