"""The JSON this package writes, as types: the manifest (`quantization-manifest.json`, manifest.py) and the reports
of `smoke`, `eval` and `bench` (what they print; eval's also goes into the manifest's `evaluations`).

Each is a TypedDict, so a reader sees every key and its type in one place, and `problems(value, Type)` checks a
value against one: `validate` refuses a manifest that lacks what the card and the checks read, and the tests
check that what each command writes has exactly the keys its type names (`strict`: no key the type does not
declare). Keys marked NotRequired are written only in some runs, or were absent from older manifests.

No `from __future__ import annotations` here: Python 3.11's TypedDict reads NotRequired only from evaluated
annotations.
"""

import types
from typing import Any, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

# -- the manifest -----------------------------------------------------------------------------------------------


class Source(TypedDict):
    model_id: str  # as given: a Hub id or a local directory
    revision: str | None  # the Hub commit sha; None for a local directory
    local: bool
    licence: dict[str, str]  # the source card's licence fields, for our card
    files: dict[str, str]  # sha256 of every source file used, by path


class Calibration(TypedDict):
    source: str  # --calibration: built-in, a file, or a dataset
    samples: int
    tokens: int
    seq_len: NotRequired[int]  # not in manifests older than the option


class Arguments(TypedDict):
    method: str
    scheme: str
    groupsize: int | None
    skip_experts: bool
    ignore: list[str]  # the full ignore list, the built-in patterns included
    observer: NotRequired[str]  # older manifests: derived from the method
    awq_grid: NotRequired[int]  # --method awq-gptq only
    recipe_file: NotRequired[str]  # --recipe FILE only
    dtype: str
    trust_remote_code: bool
    engine: NotRequired[str]  # stream, load or offload; older manifests: absent
    calibration: NotRequired[Calibration]  # calibrated methods only
    output_shards: NotRequired[int]  # the streaming engine's counts
    resumed_shards: NotRequired[int]
    quantized_modules: NotRequired[int]


class Platform(TypedDict):
    machine: str
    python: str
    cpu_count: int | None


class WrittenFile(TypedDict):
    sha256: str
    bytes: int


# -- the reports ------------------------------------------------------------------------------------------------


class VllmDtype(TypedDict):
    requested: str
    dtype: str  # what vLLM ran
    reason: NotRequired[str]  # when the CPU decided


class LayerSummary(TypedDict):
    w4a8_linear_layers: int
    other_quantized_linear_layers: dict[str, str]
    linear_kernels: list[str]
    moe_methods: list[str]
    moe_layers: int


class Generation(TypedDict):
    prompt: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str


class LayerCheck(TypedDict):
    compared: str
    statistic: str
    layers: int
    worst_layer: str | None
    value: float | None
    tolerance: float
    passed: bool
    unmatched_layers: list[str]
    median: float | None


class WorstPosition(TypedDict):
    prompt: str
    position: int
    kl: float
    vllm_top_token: int
    reference_top_token: int


class PromptKL(TypedDict):
    prompt: str
    mean_kl: float


class LogprobCheck(TypedDict):
    compared: str
    statistic: str
    value: float
    tolerance: float
    passed: bool
    verdict: str
    positions: int
    top1_matches: int
    worst_position: WorstPosition | None
    per_prompt: list[PromptKL]


class Agreement(TypedDict):
    passed: bool
    verdict: str  # one sentence a user can act on
    layers: LayerCheck
    logprobs: LogprobCheck | None  # None with --layers-only


class SmokeReport(TypedDict):
    model: str
    machine: str
    cpu: str
    dtype: VllmDtype
    load_seconds: float
    generate_seconds: float
    generated_tokens: int
    tokens_per_second: float
    layers: LayerSummary
    outputs: list[Generation]
    note: NotRequired[str]  # off Arm: vLLM's reference path, not its Arm kernels
    agreement: NotRequired[Agreement]  # --reference only


class EvalMetrics(TypedDict):
    tokens_scored: int
    perplexity_reference: float
    perplexity_quantized: float
    perplexity_increase_pct: float
    top1_agreement: float
    mean_kl_divergence: float


class Gate(TypedDict):
    max_ppl_increase_pct: float
    passed: bool


class EvalReport(TypedDict):
    model: str
    reference: str  # the source model (eval --source)
    corpus: str
    seq_len: int
    top_k: int
    windows: int
    metrics: EvalMetrics
    reference_score_seconds: float
    quantized_score_seconds: float
    wall_seconds: float
    machine: str
    dtype: VllmDtype
    vllm_version: str
    date: str
    gate: NotRequired[Gate]  # --max-ppl-increase only
    manifest_updated: NotRequired[bool]  # on stdout, not in the manifest's copy


class BenchRow(TypedDict):
    batch_size: int
    ttft_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float


class BenchModel(TypedDict):
    label: str
    model: str
    load_seconds: float
    results: list[BenchRow]


class BenchMachine(TypedDict):
    machine: str
    cpu_model: str
    cpu_count: int | None
    cpus_allowed: int
    torch_threads: int
    omp_num_threads: str | None
    vllm_cpu_omp_threads_bind: str


class BenchRatio(TypedDict):
    batch_size: int
    prefill: float
    decode: float
    ttft: float


class BenchReport(TypedDict):
    input_len: int
    output_len: int
    repeats: int
    models: list[BenchModel]
    machine: BenchMachine
    dtype: VllmDtype
    vllm_version: str
    date: str
    ratios: NotRequired[list[BenchRatio]]  # --baseline only
    note: NotRequired[str]
    report: str  # where the markdown and the chart were written
    chart: str


class Manifest(TypedDict):
    schema: str
    created: str  # ISO 8601, UTC
    source: Source
    arguments: Arguments
    packages: dict[str, str]
    vllm_wheel: dict[str, Any]  # the image's build record, or the installed distribution
    platform: Platform
    timings_s: dict[str, float]  # per phase, and "total"
    peak_rss_bytes: int
    files: dict[str, WrittenFile]  # every file beside the manifest but the card
    # One EvalReport per `eval`, kept as written: reports from older versions lack newer keys (dtype), and nothing
    # here reads them, so reading a manifest checks only that each is an object.
    evaluations: NotRequired[list[dict[str, Any]]]


# -- the check --------------------------------------------------------------------------------------------------


def problems(value, kind, where: str = "", strict: bool = True) -> list[str]:
    """What is wrong with `value` as a `kind` (a TypedDict, list[...], dict[str, ...], a union, a plain type, or
    Any): one line per problem, naming the key path. `strict`: keys a TypedDict does not declare are problems
    too (otherwise a newer writer's extra keys are accepted)."""
    name = where or "the top level"
    if kind is Any:
        return []
    if is_typeddict(kind):
        if not isinstance(value, dict):
            return [f"{name} is not an object"]
        hints = get_type_hints(kind)
        found = [f"{where}{'.' if where else ''}{k} is missing" for k in sorted(kind.__required_keys__ - set(value))]
        if strict:
            found += [f"{where}{'.' if where else ''}{k} is not a known key" for k in sorted(set(value) - set(hints))]
        for key in sorted(set(value) & set(hints)):
            found += problems(value[key], hints[key], f"{where}{'.' if where else ''}{key}", strict)
        return found
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        tries = [problems(value, option, where, strict) for option in args]
        return [] if [] in tries else min(tries, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{name} is not a list"]
        return [line for i, item in enumerate(value) for line in problems(item, args[0], f"{name}[{i}]", strict)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{name} is not an object"]
        return [line for k, item in value.items() for line in problems(item, args[1], f"{name}.{k}", strict)]
    if kind is type(None):
        return [] if value is None else [f"{name} is not null"]
    if kind is float:  # JSON writes 2.0 as 2.0, but a rounded count may be an int
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    return [] if ok else [f"{name} should be {kind.__name__}, not {type(value).__name__} {value!r:.40}"]
