"""Calibration text without the Hub: about 100 English Wikipedia articles from a PyPI wheel, as JSONL.

GPTQ needs far more calibration tokens than the widest layer has inputs (the Hessian it inverts is
inputs x inputs), and text like what the model will see. The built-in calibration text (about 1,600 tokens) is
too little for that: GPTQ then fits it and loses on everything else (docs/quality.md). gensim's wheel ships,
as test data, a shortened dump of the first English Wikipedia articles (Anarchism, Autism, Achilles, ...).
This script downloads that wheel (pinned; the dump is checked by sha256), strips the MediaWiki markup and
writes one `{"text": ...}` line per article: 97 articles, about 2.8 M characters, about 630 k SmolLM2 tokens.
The last two articles (Ampere, Algorithm: about 16 k tokens) go to a file of their own beside it,
`<OUT stem>-heldout.jsonl`: text no calibration run can have seen, for scoring (benchmarks.quality_table's
--eval-text).

The text is Wikipedia's, under CC BY-SA: it is written where you ask, never committed or shipped.

    python -m benchmarks.fetch_wikipedia OUT.jsonl
    python -m quantize MODEL --method gptq --calibration OUT.jsonl   # then
"""

from __future__ import annotations

import bz2
import io
import json
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from benchmarks.pypi_data import check_sha256, download_wheel, new_output

# The same wheel on every host (the dump inside is platform-independent; only its bytes are checked).
WHEEL = "gensim==4.4.0"
WHEEL_PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
DUMP_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DUMP_SHA256 = "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
MIN_ARTICLE_CHARS = 2000  # drops stubs and list pages that survive the markup stripping as fragments
HELD_OUT = 2  # the last articles, written to the held-out file instead


def held_out_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}-heldout.jsonl")


def download_dump(workdir: Path) -> bytes:
    with zipfile.ZipFile(download_wheel(WHEEL, workdir, *WHEEL_PLATFORM)) as zf:
        dump = zf.read(DUMP_MEMBER)
    check_sha256(DUMP_MEMBER, dump, DUMP_SHA256)
    return bz2.decompress(dump)


def _drop_nested(text: str, start: str, end: str) -> str:
    """`text` without every (possibly nested) `start ... end` span, e.g. `{{templates}}` and `{| tables |}`."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(start, i):
            depth, i = depth + 1, i + len(start)
        elif depth and text.startswith(end, i):
            depth, i = depth - 1, i + len(end)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def plain_text(wikitext: str) -> str:
    """MediaWiki markup -> readable prose. Not a full parser: enough that what remains reads like the article."""
    t = re.sub(r"<!--.*?-->", "", wikitext, flags=re.S)
    t = re.sub(r"<ref[^>]*/>", "", t)
    t = re.sub(r"<ref.*?</ref>", "", t, flags=re.S)
    t = _drop_nested(_drop_nested(t, "{{", "}}"), "{|", "|}")
    # [[File:...]], [[Category:...]] and interlanguage links, whose captions may hold [[links]] of their own
    t = re.sub(r"\[\[(?:File|Image|Category|[a-z-]{2,12}):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]", "", t)
    t = re.sub(r"\[\[[^\]|]*\|([^\]]*)\]\]", r"\1", t)  # [[target|label]] -> label
    t = re.sub(r"\[\[([^\]]*)\]\]", r"\1", t)  # [[target]] -> target
    t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)  # [url label] -> label
    t = re.sub(r"\[https?://\S+\]", "", t)
    t = re.sub(r"'{2,}", "", t)  # ''italic'', '''bold'''
    t = re.sub(r"<[^>]+>", "", t)
    t = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", t, flags=re.M)  # == Heading == -> Heading
    t = re.sub(r"^[*#:;]+\s*", "", t, flags=re.M)  # list and indent markers
    return re.sub(r"\n{3,}", "\n\n", t).strip()


def articles(xml: bytes):
    """(title, plain text) of every article in a MediaWiki XML export, redirects and stubs left out."""
    for _, element in ET.iterparse(io.BytesIO(xml)):
        if element.tag.rsplit("}", 1)[-1] != "page":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element.iter()}
        if not fields.get("text", "").lstrip().lower().startswith("#redirect"):
            text = plain_text(fields.get("text", ""))
            if len(text) >= MIN_ARTICLE_CHARS:
                yield fields.get("title", ""), text
        element.clear()


def main() -> None:
    out = new_output(__doc__.splitlines()[0], ".jsonl file")
    if held_out_path(out).exists():
        sys.exit(f"error: {held_out_path(out)} already exists (fix: remove it or choose another path)")
    with tempfile.TemporaryDirectory() as tmp:
        xml = download_dump(Path(tmp))
    write(out, list(articles(xml)))


def write(out: Path, pages: list[tuple[str, str]]) -> None:
    """One JSONL line per (title, text): the last HELD_OUT pages to `held_out_path(out)`, the others to `out`
    (written last, each file complete or absent)."""
    lines = [json.dumps({"text": f"{title}\n\n{text}"}) + "\n" for title, text in pages]
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, part in ((held_out_path(out), lines[-HELD_OUT:]), (out, lines[:-HELD_OUT])):
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text("".join(part), encoding="utf-8")
        partial.rename(path)
        print(f"{len(part)} Wikipedia articles ({sum(map(len, part)):,} characters of JSON) written to {path}")


if __name__ == "__main__":
    main()
