"""The package's walls (tools/structure.py, `make structure`): cli on top, the contract below its users, no cycle."""

from __future__ import annotations

from tools import structure


def test_the_package_keeps_its_walls():
    edges = structure.graph()
    level, cyclic = structure.layers(edges)
    assert structure.problems(edges, level, cyclic) == []
    assert level["cli"] == max(level.values())
    assert all(level["contract"] < level[user] for user in structure.CONTRACT_USERS)


def test_a_crossed_wall_is_reported():
    edges = {"cli": {"a"}, "a": {"b"}, "b": {"a"}, "contract": {"smoke"}, "smoke": {"cli"}}
    level, cyclic = structure.layers(edges)
    found = structure.problems(edges, level, cyclic)
    assert "import cycle among: a, b" in found
    assert "smoke imports cli: only the command line may" in found
    assert "contract imports smoke, which relies on it" in found


def test_no_module_or_function_is_too_long(tmp_path):
    assert structure.too_long(sorted(structure.PACKAGE.rglob("*.py"))) == []
    path = tmp_path / "made_up.py"
    body = "def f():\n" + "    x = 1\n" * structure.MAX_FUNCTION_LINES  # one line over
    path.write_text(body + "\n" * (structure.MAX_MODULE_LINES - structure.MAX_FUNCTION_LINES))
    assert structure.too_long([path]) == [
        f"{path} has {structure.MAX_MODULE_LINES + 1} lines (at most {structure.MAX_MODULE_LINES})",
        f"{path}:1 f() has {structure.MAX_FUNCTION_LINES + 1} lines (at most {structure.MAX_FUNCTION_LINES})",
    ]
