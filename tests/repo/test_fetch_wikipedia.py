"""benchmarks/fetch_wikipedia.py: the markup stripper and the article filter (the download needs PyPI, not tested)."""

from __future__ import annotations

import json

import pytest

wiki_module = pytest.importorskip(
    "benchmarks.fetch_wikipedia", reason="benchmarks/ is repository-only research tooling, not in images"
)


@pytest.fixture(scope="module")
def wiki():
    return wiki_module


def test_plain_text_keeps_prose_and_drops_markup(wiki):
    wikitext = (
        "{{Infobox person|name={{nowrap|A. B.}}|born=1900}}\n"
        "'''Ada''' was a [[mathematician]] from [[London|the capital]].<ref name=x>Cited, p. 3.</ref> "
        "She wrote [http://example.org notes].<ref name=y/>\n"
        "<!-- editors: keep this short -->\n"
        "== Early life ==\n"
        "* She read ''widely''.\n"
        '{| class="wikitable"\n| cell || cell\n|}\n'
        "[[File:Ada.jpg|thumb|Ada with [[Charles Babbage|Babbage]]]]\n"
        "[[Category:Mathematicians]]\n[[de:Ada]]\n"
    )
    assert wiki.plain_text(wikitext) == (
        "Ada was a mathematician from the capital. She wrote notes.\n\nEarly life\nShe read widely."
    )


def test_articles_skip_redirects_and_stubs(wiki):
    body = "A long article sentence. " * 100
    xml = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
        f"<page><title>Long</title><revision><text>{body}</text></revision></page>"
        "<page><title>Moved</title><revision><text>#REDIRECT [[Long]]</text></revision></page>"
        "<page><title>Stub</title><revision><text>Too short &amp; small.</text></revision></page>"
        "</mediawiki>"
    ).encode()
    assert list(wiki.articles(xml)) == [("Long", body.strip())]


def test_the_last_articles_are_held_out_of_the_calibration_file(wiki, tmp_path):
    pages = [(f"Title {i}", f"Text {i}.") for i in range(5)]
    out = tmp_path / "wiki.jsonl"
    wiki.write(out, pages)
    calibration = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    held_out = [json.loads(line)["text"] for line in (tmp_path / "wiki-heldout.jsonl").read_text().splitlines()]
    assert calibration == [f"Title {i}\n\nText {i}." for i in range(5 - wiki.HELD_OUT)]
    assert held_out == [f"Title {i}\n\nText {i}." for i in range(5 - wiki.HELD_OUT, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wiki-heldout.jsonl", "wiki.jsonl"]  # no partial left
