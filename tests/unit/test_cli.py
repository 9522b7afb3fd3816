"""The command line's shape: one module per command, listed by `--help` and docs/design.md; options the user gave
told from defaults; old flag names kept; the card's command parses back to the arguments that made the checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from quantize import card, quantizer, records
from quantize.cli import COMMANDS, quantize_parser
from quantize.cli import quantize as quantize_command
from quantize.cli.common import given
from tests.helpers import ROOT, error_line, run_main

EXPECTED = {"validate", "smoke", "eval", "bench", "serve", "publish"}


def test_every_command_is_listed_by_help():
    assert set(COMMANDS) == EXPECTED
    helptext = quantize_parser().format_help()
    for name, module in COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(module.SUMMARY)}$", helptext, re.M), name


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is kept out of images (.dockerignore)")
def test_every_command_is_in_the_design_doc():
    design = (ROOT / "docs" / "design.md").read_text()
    for name in EXPECTED:
        assert f"| `python -m quantize {name} DIR" in design, name


def test_given_tells_an_option_from_its_default():
    parser = quantize_parser()
    assert given(parser.parse_args(["m", "--scheme", "channelwise"])) == {"scheme"}
    args = parser.parse_args(["m", "--scheme", "groupwise", "--method", "mse", "--groupsize", "32", "--overwrite"])
    assert given(args) == {"scheme", "method", "groupsize", "overwrite"}
    assert (args.method, args.groupsize) == ("mse", 32)  # the defaults' own values, given explicitly
    assert given(COMMANDS["validate"].build().parse_args(["ckpt"])) == set()  # no option at all


@pytest.mark.parametrize("option", [["--method", "mse"], ["--groupsize", "32"], ["--awq-grid", "10"]])
def test_recipe_refuses_seed_options_even_at_their_defaults(capsys, tmp_path, option):
    result = run_main(capsys, tmp_path / "model", "--recipe", ROOT / "recipes" / "w4a8-mse-g32.yaml", *option)
    assert result.returncode == 2
    assert error_line(result) == (
        "error: --recipe sets the method, group size and AWQ grid itself "
        "(fix: drop --method, --groupsize and --awq-grid)"
    )


@pytest.mark.parametrize(
    "command,new,dest",
    [("eval", "--source", "source"), ("bench", "--baseline", "baseline")],
)
def test_renamed_options_keep_their_old_name(command, new, dest):
    parser = COMMANDS[command].build()
    assert getattr(parser.parse_args(["ckpt", new, "m"]), dest) == "m"
    assert getattr(parser.parse_args(["ckpt", "--reference", "m"]), dest) == "m"


def _job_fields(argv: list[str]) -> dict:
    """What a command line asks of quantizer.Job, except where the output goes."""
    args = quantize_parser().parse_args(argv)
    recipe = quantize_command.recipe_of(args)
    return {
        "model_id": args.model_id,
        "recipe": recipe,
        "dtype": args.dtype,
        "trust_remote_code": args.trust_remote_code,
        **({"calibration": args.calibration, "samples": args.calibration_samples} if recipe.calibrated else {}),
        **({"seq_len": args.calibration_seq_len} if recipe.calibrated else {}),
    }


@pytest.mark.parametrize(
    "options",
    [
        ["--scheme", "channelwise"],
        ["--scheme", "groupwise", "--groupsize", "64", "--method", "minmax", "--ignore", "re:.*down_proj$"],
        ["--scheme", "groupwise", "--method", "gptq", "--calibration-samples", "4", "--calibration-seq-len", "64"],
        ["--recipe", "recipes/w4a8-mse-g32.yaml", "--calibration-samples", "2", "--calibration-seq-len", "64"],
    ],
    ids=["seed-default", "minmax-g64-ignore", "gptq", "recipe-file"],
)
def test_card_command_parses_back_to_the_same_arguments(tiny_llama, tmp_path, monkeypatch, options):
    """arguments -> manifest -> the card's command -> the same arguments (the card's command line is written
    from the manifest, by hand, as the parser's inverse: this keeps them in step)."""
    monkeypatch.chdir(ROOT)
    argv = [str(tiny_llama), *options, "--output-root", str(tmp_path)]
    args = quantize_parser().parse_args(argv)
    out = quantize_command.run(args)
    info = json.loads((Path(out) / "quantization-manifest.json").read_text())
    assert records.problems(info, records.Manifest) == []  # every key written is a key of the type
    again = card.quantize_command(info)[3:]  # after `python -m quantize`
    assert _job_fields(again) == _job_fields(argv)
    assert (
        quantizer.output_path(
            again[0], quantize_command.recipe_of(quantize_parser().parse_args(again)), None, None
        ).name
        == out.name
    )
