"""records.problems: a value checked against the types of the JSON the package writes (quantize/records.py).

The real manifest and reports are checked where they are made: test_cli (every quantize case), test_smoke,
test_eval and test_bench. Here, made-up values: each kind of mistake is found and named by its key path."""

from typing import Any, NotRequired, TypedDict

from quantize import records


class Inner(TypedDict):
    count: int
    share: float


class Outer(TypedDict):
    name: str
    maybe: str | None
    inner: Inner
    rows: list[Inner]
    by_name: dict[str, int]
    anything: Any
    extra: NotRequired[bool]


GOOD = {
    "name": "x",
    "maybe": None,
    "inner": {"count": 1, "share": 2},  # an int is a float: JSON keeps a whole number's type from round()
    "rows": [{"count": 0, "share": 0.5}],
    "by_name": {"a": 1},
    "anything": [object()],
}


def test_a_good_value_has_no_problems():
    assert records.problems(GOOD, Outer) == []
    assert records.problems({**GOOD, "extra": True, "maybe": "y"}, Outer) == []


def test_each_mistake_is_named_by_its_path():
    bad = {
        **GOOD,
        "inner": {"count": True, "share": "2"},  # a bool is not an int
        "rows": [{"count": 1}],
        "by_name": {"a": 1.5},
        "surprise": 1,
    }
    del bad["name"]
    assert records.problems(bad, Outer) == [
        "name is missing",
        "surprise is not a known key",
        "by_name.a should be int, not float 1.5",
        "inner.count should be int, not bool True",
        "inner.share should be float, not str '2'",
        "rows[0].share is missing",
    ]


def test_not_strict_accepts_a_newer_writers_keys_but_not_a_missing_one():
    assert records.problems({**GOOD, "surprise": 1}, Outer, strict=False) == []
    assert records.problems({k: v for k, v in GOOD.items() if k != "inner"}, Outer, strict=False) == [
        "inner is missing"
    ]


def test_wrong_containers():
    assert records.problems([], Outer) == ["the top level is not an object"]
    assert records.problems({**GOOD, "rows": {}}, Outer) == ["rows is not a list"]
    assert records.problems({**GOOD, "maybe": 3}, Outer) == ["maybe should be str, not int 3"]


def test_not_required_keys_are_read_from_the_module():
    """records.py evaluates its annotations (no postponed annotations), so NotRequired takes effect."""
    assert "evaluations" in records.Manifest.__optional_keys__
    assert "source" in records.Manifest.__required_keys__
    assert {"note", "agreement"} <= records.SmokeReport.__optional_keys__
