"""`python -m quantize serve`: vLLM's OpenAI-compatible server on a tiny W4A8 checkpoint, spoken to with the
official `openai` client, as a user's application would.

One server for the module (`serve --detach` on a free loopback port, about 30 s to start on 2 cores), then:
completions, chat completions streamed and not, requests with no key or a wrong one refused (401), a bad
request answered with an error and the server still serving, and the key nowhere in the log or the process
list. The checks of options and environment run without a server.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
from pathlib import Path

import pytest

from quantize import detached, health, serve
from tests.helpers import error_line, run_cli, run_main

KEY = "sk-test-4f1d2c"  # a made-up key; the tests check it never leaks
# The tiny Llama's tokenizer has no chat template; vLLM takes one through serve's pass-through options.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(quantized, tmp_path_factory):
    """A detached server on the tiny Llama, W4A8 groupwise; yields (report, checkpoint)."""
    work = tmp_path_factory.mktemp("serve")
    ckpt = quantized("tiny_llama", method="minmax", scheme="groupwise")
    template = work / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    args = ["serve", ckpt, "--detach", "--eager", "--port", free_port(), "--chat-template", template]
    result = run_cli(*args, env={"VLLM_API_KEY": KEY, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    try:
        yield report, ckpt
    finally:
        detached.stop(report["pid"])


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server[0]["url"], api_key=KEY, max_retries=0, timeout=120)


@pytest.mark.vllm
def test_completion(server, client):
    report, ckpt = server
    assert report["model"] == ckpt.name and report["api_key"] is True
    assert 0 < report["seconds_to_health"] <= report["seconds_to_first_answer"]
    done = client.completions.create(model=report["model"], prompt="The red fox", max_tokens=8, temperature=0)
    assert done.usage.completion_tokens == 8
    assert done.choices[0].text.strip()


@pytest.mark.vllm
def test_chat_completion_streamed_and_not(server, client):
    model = server[0]["model"]
    messages = [{"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    text = whole.choices[0].message.content
    assert text
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 1  # arrived in pieces, and greedy decoding gives the same text either way
    assert "".join(pieces) == text


@pytest.mark.vllm
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_requests_without_the_key_are_refused(server, key):
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(server[0]["url"] + "/models", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401


@pytest.mark.vllm
def test_bad_request_gets_an_error_and_the_server_keeps_serving(server, client):
    import openai

    model = server[0]["model"]
    with pytest.raises(openai.BadRequestError):  # longer than the model's 256-token context
        client.completions.create(model=model, prompt="x", max_tokens=100_000)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert client.completions.create(model=model, prompt="Hello", max_tokens=2).usage.completion_tokens == 2


@pytest.mark.vllm
def test_health_check_finds_the_server(server):
    """By its pid or port, whatever other vLLM servers run on this host (the image's check, alone in its
    container, finds it without either)."""
    report, _ = server
    port = int(report["url"].split(":")[-1].split("/")[0])
    assert Path(report["pid_file"]).read_text().strip() == str(report["pid"])
    assert health.server_port(pid=report["pid"]) == port
    assert health.main(["--pid", str(report["pid"])]) == 0
    assert health.main(["--port", str(port)]) == 0


LOAD_REQUESTS = 32  # half streamed; with LOAD_DROPPED clients that hang up mid-stream, LOAD_CLIENTS at a time
LOAD_DROPPED = 8
LOAD_CLIENTS = 16
LOAD_RSS_GROWTH = 1.25  # the server's resident memory after the load: at most this times before, plus 256 MiB


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the server's process group (the API server and its engine)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat, the process group
                rss = Path(status.parent, "status").read_text().split("VmRSS:")[1].split()[0]
                total += int(rss) * 1024
        except (OSError, IndexError, ValueError):  # ended meanwhile, or a kernel thread
            continue
    return total


def _completion(base: str, model: str, i: int, stream: bool, drop: bool = False) -> str:
    """One completion over a raw HTTP connection: the text (streamed: the joined pieces), or with `drop` the
    first streamed chunk, after which the client hangs up."""
    import http.client
    from urllib.parse import urlparse

    url = urlparse(base)
    body = {"model": model, "prompt": f"Story {i}: the fox", "max_tokens": 16, "temperature": 0, "stream": stream}
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        connection.request("POST", "/v1/completions", json.dumps(body), headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()[:500]
        if not stream:
            return json.loads(response.read())["choices"][0]["text"]
        pieces = []
        for line in response:
            if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                pieces.append(json.loads(line[6:])["choices"][0]["text"])
                if drop:
                    return pieces[0]
        return "".join(pieces)
    finally:
        connection.close()


@pytest.mark.vllm
def test_load_streamed_plain_and_dropped_clients(server):
    """Bounded load on loopback: LOAD_REQUESTS completions (half streamed) and LOAD_DROPPED clients that hang up
    mid-stream, LOAD_CLIENTS at a time. Every completion answers, streamed and plain greedy texts agree, the
    server stays healthy and its resident memory within LOAD_RSS_GROWTH x + 256 MiB."""
    from concurrent.futures import ThreadPoolExecutor

    report, _ = server
    base, model = report["url"].removesuffix("/v1"), report["model"]
    _completion(base, model, 0, stream=False)  # warm: first-request allocations are not growth
    before = _group_rss(report["pid"])
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        texts = [pool.submit(_completion, base, model, i // 2, stream=i % 2 == 1) for i in range(LOAD_REQUESTS)]
        dropped = [pool.submit(_completion, base, model, i, stream=True, drop=True) for i in range(LOAD_DROPPED)]
        texts, dropped = [f.result() for f in texts], [f.result() for f in dropped]
    assert all(texts) and all(dropped)
    assert texts[0::2] == texts[1::2]  # request i plain and streamed: the same greedy text
    assert health.main(["--pid", str(report["pid"])]) == 0
    after = _group_rss(report["pid"])
    assert 0 < after <= before * LOAD_RSS_GROWTH + (256 << 20), (before, after)


def _process(proc: Path, pid: int, *argv: str) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_text("\0".join([*argv, ""]))


def test_health_check_without_a_server(tmp_path):
    _process(tmp_path, 1, "python", "-m", "quantize", "smoke", "/out/x")
    assert health.server_port(tmp_path) is None
    _process(tmp_path, 2, "python", "-m", health.SERVER_MODULE, "--port", "9001")
    assert health.server_port(tmp_path) == 9001


def test_health_check_tells_servers_apart(tmp_path):
    """Another server on the host (the one that failed a fresh clone's CI) is neither taken nor guessed."""
    _process(tmp_path, 40537, "python", "-m", health.SERVER_MODULE, "--port", "9001")
    _process(tmp_path, 18555, "python", "-m", health.SERVER_MODULE, "--model", "m")  # vLLM's default port
    assert health.server_port(tmp_path, pid=40537) == 9001
    assert health.server_port(tmp_path, pid=18555) == health.DEFAULT_PORT
    assert health.server_port(tmp_path, pid=1) is None
    with pytest.raises(ValueError, match=r"several vLLM servers run here \(pids 18555, 40537\)"):
        health.server_port(tmp_path)


def test_health_check_of_a_process_that_is_no_server(capsys):
    assert health.main(["--pid", str(os.getpid())]) == 1
    assert capsys.readouterr().err.startswith(f"error: process {os.getpid()} is not a vLLM server (fix: ")


@pytest.mark.vllm
def test_the_key_is_in_no_log_and_no_command_line(server, client):
    report, _ = server
    client.completions.create(model=report["model"], prompt="Hello", max_tokens=1)
    assert KEY not in Path(report["log"]).read_text()
    assert "--api-key" not in Path(f"/proc/{report['pid']}/cmdline").read_text()
    assert KEY not in Path(f"/proc/{report['pid']}/cmdline").read_bytes().decode()


def test_mla_backend_limit():
    lite = {"kv_lora_rank": 512, "qk_rope_head_dim": 64}  # DeepSeek-V2-Lite: head size 576, the CPU backend's
    assert not serve.mla_unsupported(lite)
    assert serve.mla_unsupported({"kv_lora_rank": 32, "qk_rope_head_dim": 16})
    assert not serve.mla_unsupported({"num_attention_heads": 4})  # not MLA


def test_environment_defaults_and_overrides(monkeypatch):
    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_MLA_DISABLE", "VLLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    mla = {"kv_lora_rank": 32, "qk_rope_head_dim": 16}
    env = serve.environment(mla, None, None, None, tcmalloc=False)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4" and env["VLLM_MLA_DISABLE"] == "1"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env and "VLLM_API_KEY" not in env
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "8")
    monkeypatch.setenv("VLLM_MLA_DISABLE", "0")  # the user's choice stands
    env = serve.environment(mla, "k", None, "0-3", tcmalloc=False)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8" and env["VLLM_MLA_DISABLE"] == "0"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-3" and env["VLLM_API_KEY"] == "k"
    assert serve.environment({}, None, 2, None, tcmalloc=False)["VLLM_CPU_KVCACHE_SPACE"] == "2"  # option wins


def test_api_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.delenv("VLLM_API_KEY_FILE", raising=False)
    assert serve.api_key(None) is None
    (tmp_path / "key").write_text("from-file\n")
    monkeypatch.setenv("VLLM_API_KEY_FILE", str(tmp_path / "key"))  # e.g. a compose secret
    assert serve.api_key(None) == "from-file"
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert serve.api_key(str(tmp_path / "key")) == "from-env"


def test_command_line_has_no_key():
    argv = serve.command(
        Path("/m/ckpt"), host="0.0.0.0", port=8000, max_model_len=4096, served_model_name="ckpt", eager=False,
        vllm_args=["--chat-template", "t.jinja"],
    )  # fmt: skip
    assert argv[1:3] == ["-m", serve.SERVER_MODULE]
    assert argv[argv.index("--model") + 1] == "/m/ckpt" and argv[-2:] == ["--chat-template", "t.jinja"]
    assert not any("key" in a.lower() for a in argv)


@pytest.fixture(scope="module")
def llama_ckpt(quantized) -> Path:
    return quantized("tiny_llama", method="minmax", scheme="channelwise")


BAD_OPTIONS = {
    "kv-cache-zero": (
        ["--kv-cache-gib", "0"],
        {},
        "error: KV cache of 0.0 GiB is not a positive whole number (fix: e.g. --kv-cache-gib 4)",
    ),
    "key-file-missing": (
        ["--api-key-file", "{tmp}/none"],
        {},
        "error: cannot read the API key file {tmp}/none: No such file or directory (fix: check --api-key-file)",
    ),
    "key-file-empty": (
        [],
        {"VLLM_API_KEY_FILE": "{tmp}/empty"},
        "error: the API key file {tmp}/empty is empty (fix: write the key into it, or drop --api-key-file)",
    ),
    "open-port-no-key": (
        ["--host", "0.0.0.0"],
        {},
        "error: --host 0.0.0.0 without an API key would let anyone who can reach this machine use the model (fix: "
        "set VLLM_API_KEY or --api-key-file, or pass --allow-no-api-key if the network is yours)",
    ),
    "host-name-no-key": (
        ["--host", "myhost.example"],
        {},
        "error: --host myhost.example without an API key would let anyone who can reach this machine use the model "
        "(fix: set VLLM_API_KEY or --api-key-file, or pass --allow-no-api-key if the network is yours)",
    ),
}


@pytest.mark.parametrize("args,env,line", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_fail_before_vllm_starts(llama_ckpt, tmp_path, monkeypatch, capsys, args, env, line):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.setattr(os, "execve", pytest.fail)  # a case that passed the checks would become the server
    (tmp_path / "empty").write_text("\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    result = run_main(capsys, "serve", llama_ckpt, *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2 and error_line(result) == line.format(tmp=tmp_path)


@pytest.mark.parametrize(
    "host,env,extra",
    [
        ("0.0.0.0", {"VLLM_API_KEY": KEY}, []),  # a key
        ("0.0.0.0", {"VLLM_API_KEY_FILE": "{tmp}/key"}, []),  # a key file (Compose's secret)
        ("::", {}, ["--allow-no-api-key"]),  # the user said so
        ("127.0.0.2", {}, []),  # loopback, all of 127.0.0.0/8
        ("::1", {}, []),
        ("localhost", {}, []),
    ],
)
def test_open_port_starts_with_a_key_or_the_flag(llama_ckpt, tmp_path, monkeypatch, capsys, host, env, extra):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.delenv("VLLM_API_KEY_FILE", raising=False)
    (tmp_path / "key").write_text(KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))

    class Started(Exception):  # where the server would have started (exec)
        pass

    def execve(path, argv, environ):
        raise Started(argv)

    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(Started) as started:
        run_main(capsys, "serve", llama_ckpt, "--host", host, *extra)
    argv = started.value.args[0]
    assert argv[argv.index("--host") + 1] == host
    assert ("reachable by anyone" in capsys.readouterr().err) == bool(extra)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="on Arm the W4A8 MoE kernels exist")
def test_moe_experts_on_x86_refused(quantized, capsys):
    ckpt = quantized("tiny_deepseek", method="minmax", scheme="channelwise")
    result = run_main(capsys, "serve", ckpt)
    assert result.returncode == 2 and "--skip-experts" in error_line(result)


@pytest.mark.vllm
def test_a_server_that_fails_to_start_reports_vllms_error(llama_ckpt, tmp_path):
    result = run_cli("serve", llama_ckpt, "--detach", "--port", free_port(), "--max-model-len", "100000",
                     "--log", tmp_path / "serve.log", env={"VLLM_CPU_KVCACHE_SPACE": "1"})  # fmt: skip
    assert result.returncode == 1
    assert "max_model_len" in error_line(result) and f"(fix: read {tmp_path}/serve.log)" in error_line(result)
    assert os.path.getsize(tmp_path / "serve.log") > 0 and not (tmp_path / "serve.pid").exists()


@pytest.mark.vllm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_detach_stopped_while_waiting_stops_its_server(llama_ckpt, tmp_path, sig):
    """Killing `serve --detach` (or Ctrl-C) during the readiness wait stops the server it started and removes
    the pid file, so nothing keeps holding the port. (SIGINT as from a terminal: a shell starts a background job,
    `make test &`, with SIGINT ignored, and then no process of it can be interrupted.)"""
    import subprocess
    import sys
    import time

    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "quantize", "serve", str(llama_ckpt), "--detach", "--port", str(free_port())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    parent = subprocess.Popen([*argv, "--log", str(log)], env=env, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    pid_file = log.with_suffix(".pid")
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
    server_pid = int(pid_file.read_text())
    try:
        parent.send_signal(sig)
        _, err = parent.communicate(timeout=120)
        assert parent.returncode == 128 + sig, err[-2000:]
        stopped = f"stopped it (pid {server_pid}) (fix: run serve --detach again)"
        assert err.strip().splitlines()[-1] == f"error: {sig.name} while waiting for the server: {stopped}"
        assert not pid_file.exists()
        deadline = time.monotonic() + 30  # the server has exited; its engine's processes follow within seconds
        with pytest.raises(ProcessLookupError):  # the server's whole process group is gone
            while time.monotonic() < deadline:
                os.killpg(server_pid, 0)
                time.sleep(0.5)
    finally:
        detached.stop(server_pid)  # a failed check leaves no server behind
