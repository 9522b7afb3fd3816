"""The committed tiny models are the bytes SHA256SUMS names, and still match tests/tiny_models.py's shapes.

Every machine must test the same models (tests/tiny_models.py says why they are committed rather than
trained at test time), so a changed or re-trained fixture must come with a new SHA256SUMS.
"""

from __future__ import annotations

import json

import pytest

from tests import tiny_models


def test_fixtures_match_their_checksums():
    listed = {}
    for line in (tiny_models.FIXTURES / tiny_models.SUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert tiny_models.sha256sums() == listed


@pytest.mark.parametrize("arch", sorted(tiny_models.FIXTURE_STEPS))
def test_fixture_config_matches_the_builder(arch):
    """The committed config is what tiny_models would build today (shapes, MLA and MoE settings)."""
    committed = json.loads((tiny_models.fixture(arch) / "config.json").read_text())
    built = tiny_models.CONFIGS[arch](committed["vocab_size"]).to_diff_dict()
    for key, value in built.items():
        if key not in ("transformers_version", "dtype", "architectures"):
            assert committed.get(key) == value, key
    training = (tiny_models.fixture(arch) / "TRAINING.txt").read_text()
    assert f"arch={arch} steps={tiny_models.FIXTURE_STEPS[arch]} " in training
