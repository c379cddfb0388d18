"""Every ``jinav3 serve`` setting from the environment (issue 27): each flag reads ``JINAV3_<FLAG>``, the command
line wins, ``--help`` names the variable, a bad value is an error naming it, and text-embeddings-inference's
flag names are aliases. One real ``jinav3 serve`` configured from the environment alone."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from helpers import GOLDEN
from servers import ROOT, free_port, wait_healthy

from jinav3.integrations.cli import UsageError, build_parser
from jinav3.integrations.cli.serve import add_serve_arguments, read_api_key


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jinav3 serve")
    add_serve_arguments(parser)  # reads the environment now, as the command line does when it builds its parser
    return parser


def test_help_names_every_flags_variable(capsys):
    parser = serve_parser()
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 15
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for flag in flags:
        assert f"[env: JINAV3_{flag.lstrip('-').upper().replace('-', '_')}" in shown, flag
    assert "[env: JINAV3_MODEL, then MODEL_ID]" in shown and "[env: JINAV3_HOST]" in shown  # HOSTNAME: never


def test_settings_come_from_the_environment_and_the_command_line_wins(monkeypatch):
    for name, value in {"JINAV3_MODEL": "from-env", "JINAV3_PORT": "9090", "JINAV3_HOST": "0.0.0.0",
                        "JINAV3_MAX_BATCH_TOKENS": "512", "JINAV3_MAX_CLIENT_BATCH_SIZE": "7",
                        "JINAV3_SERVED_MODEL_NAME": "a, b", "JINAV3_LOG_LEVEL": "debug",
                        "JINAV3_BODY_TIMEOUT": "2.5", "JINAV3_MAX_REQUEST_BYTES": "1000"}.items():
        monkeypatch.setenv(name, value)
    args = serve_parser().parse_args([])
    assert (args.model, args.port, args.host, args.max_batch_tokens) == ("from-env", 9090, "0.0.0.0", 512)
    assert (args.max_client_batch_size, args.served_model_name, args.log_level) == (7, ["a", "b"], "debug")
    assert (args.body_timeout, args.max_request_bytes) == (2.5, 1000)
    given = serve_parser().parse_args(["--model", "cli", "--port", "7070", "--served-model-name", "c",
                                       "--max-batch-tokens", "64", "--log-level", "error"])
    assert (given.model, given.port, given.served_model_name, given.max_batch_tokens, given.log_level) == (
        "cli", 7070, ["c"], 64, "error")
    assert given.max_client_batch_size == 7  # not given: still the environment's


def test_teis_own_variables_are_read_after_ours(monkeypatch, capsys):
    """A TEI manifest's environment moves over: MODEL_ID, PORT, DTYPE, PAYLOAD_LIMIT, MAX_BATCH_TOKENS,
    MAX_CLIENT_BATCH_SIZE, MAX_CONCURRENT_REQUESTS; JINAV3_<FLAG> and the command line win; HOSTNAME (every
    shell's machine name) is never an address to bind."""
    tei = {"MODEL_ID": "tei-model", "PORT": "3000", "DTYPE": "float16", "PAYLOAD_LIMIT": "2000000",
           "MAX_BATCH_TOKENS": "4096", "MAX_CLIENT_BATCH_SIZE": "16", "MAX_CONCURRENT_REQUESTS": "64",
           "HOSTNAME": "build-host-7"}
    for name in ("JINAV3_MODEL", "JINAV3_PORT", "JINAV3_HOST", "JINAV3_DTYPE", "JINAV3_MAX_BATCH_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in tei.items():
        monkeypatch.setenv(name, value)
    args = serve_parser().parse_args([])
    assert (args.model, args.port, args.dtype, args.max_request_bytes) == ("tei-model", 3000, "float16", 2_000_000)
    assert (args.max_batch_tokens, args.max_client_batch_size, args.max_concurrent_requests) == (4096, 16, 64)
    assert args.host == "127.0.0.1"
    monkeypatch.setenv("JINAV3_PORT", "4000")
    monkeypatch.setenv("JINAV3_MODEL", "ours")
    args = serve_parser().parse_args(["--max-batch-tokens", "128"])
    assert (args.port, args.model, args.max_batch_tokens) == (4000, "ours", 128)
    monkeypatch.setenv("PORT", "http")
    monkeypatch.delenv("JINAV3_PORT")
    with pytest.raises(SystemExit):
        serve_parser().parse_args([])
    assert "$PORT: " in capsys.readouterr().err  # the variable the bad value came from


def test_tei_flag_names_are_aliases(monkeypatch):
    monkeypatch.delenv("JINAV3_PORT", raising=False)
    args = serve_parser().parse_args(["--model-id", "m", "--hostname", "0.0.0.0", "--payload-limit", "100",
                                      "--max-batch-tokens", "256", "--max-client-batch-size", "8",
                                      "--max-concurrent-requests", "9"])
    assert (args.model, args.host, args.max_request_bytes) == ("m", "0.0.0.0", 100)
    assert (args.max_batch_tokens, args.max_client_batch_size, args.max_concurrent_requests) == (256, 8, 9)


@pytest.mark.parametrize("name, value, said", [
    ("JINAV3_PORT", "99999", "$JINAV3_PORT: must be a port number"),
    ("JINAV3_MAX_BATCH_TOKENS", "lots", "$JINAV3_MAX_BATCH_TOKENS:"),
    ("JINAV3_LOG_LEVEL", "loud", "$JINAV3_LOG_LEVEL: 'loud' is not one of critical, error, warning, info, debug"),
    ("JINAV3_BODY_TIMEOUT", "-1", "$JINAV3_BODY_TIMEOUT: must be a positive number of seconds"),
])
def test_a_bad_variable_is_an_error_naming_it_and_only_for_serve(monkeypatch, capsys, name, value, said):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        serve_parser().parse_args([])
    assert exited.value.code == 2 and said in capsys.readouterr().err
    flag = "--" + name.removeprefix("JINAV3_").lower().replace("_", "-")
    good = {"JINAV3_PORT": "8081", "JINAV3_MAX_BATCH_TOKENS": "64", "JINAV3_LOG_LEVEL": "info",
            "JINAV3_BODY_TIMEOUT": "3"}[name]
    assert serve_parser().parse_args([flag, good]) is not None  # the command line overrides a bad variable
    assert build_parser().parse_args(["info"]).command == "info"  # other commands do not read it


def test_api_key_variables_and_which_wins(monkeypatch, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("from-file\n")
    monkeypatch.setenv("JV3_ENV_TEST_KEY", "from-variable")
    monkeypatch.setenv("JINAV3_API_KEY_ENV", "JV3_ENV_TEST_KEY")
    assert read_api_key(serve_parser().parse_args([])) == "from-variable"
    assert read_api_key(serve_parser().parse_args(["--api-key-file", str(keyfile)])) == "from-file"
    monkeypatch.setenv("JINAV3_API_KEY_FILE", str(keyfile))
    with pytest.raises(UsageError, match=r"\$JINAV3_API_KEY_ENV and \$JINAV3_API_KEY_FILE are both set"):
        read_api_key(serve_parser().parse_args([]))
    assert read_api_key(serve_parser().parse_args(["--api-key-env", "JV3_ENV_TEST_KEY"])) == "from-variable"


@pytest.mark.slow
def test_jinav3_serve_configured_by_the_environment_alone():
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "JINAV3_MODEL": str(GOLDEN),
           "JINAV3_DEVICE": "cpu", "JINAV3_PORT": str(port), "JINAV3_HOSTNAME": "ignored: not a jinav3 variable",
           "JINAV3_HOST": "127.0.0.1", "JINAV3_API_KEY_ENV": "JV3_SERVE_KEY", "JV3_SERVE_KEY": "env-secret-123",
           "JINAV3_MAX_CLIENT_BATCH_SIZE": "3", "JINAV3_SERVED_MODEL_NAME": "tei-name", "JINAV3_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "jinav3.integrations.cli", "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, 120)
        headers = {"Authorization": "Bearer env-secret-123"}
        assert httpx.get(f"{url}/info").status_code == 401
        info = httpx.get(f"{url}/info", headers=headers).json()
        assert info["max_client_batch_size"] == 3 and info["served_model_name"] == "tei-name"
        assert httpx.post(f"{url}/embed", json={"inputs": ["a"] * 4}, headers=headers).status_code == 413
        assert httpx.post(f"{url}/embed", json={"inputs": ["a"] * 3}, headers=headers).status_code == 200
    finally:
        process.terminate()
        assert process.wait(30) == 0
        assert "env-secret-123" not in (process.stderr.read() if process.stderr else "")


def test_ray_flags_switches_from_the_environment_and_their_checks(monkeypatch):
    from jinav3.integrations.cli.serve import cmd_serve
    from jinav3.integrations.server.ray_serve import _scaling

    monkeypatch.setenv("JINAV3_RAY", "yes")
    monkeypatch.setenv("JINAV3_REPLICAS", "3")
    monkeypatch.setenv("JINAV3_NUM_GPUS_PER_REPLICA", "0.5")
    args = serve_parser().parse_args([])
    assert (args.ray, args.replicas, args.num_gpus_per_replica) == (True, 3, 0.5)
    monkeypatch.setenv("JINAV3_RAY", "maybe")
    with pytest.raises(UsageError, match=r"\$JINAV3_RAY: 'maybe' is not true or false"):
        cmd_serve(serve_parser().parse_args(["--model", str(GOLDEN), "--device", "cpu"]))
    monkeypatch.setenv("JINAV3_RAY", "0")
    with pytest.raises(UsageError, match="--replicas: only apply with --ray"):
        cmd_serve(serve_parser().parse_args(["--model", str(GOLDEN), "--device", "cpu"]))
    assert _scaling(2, None, None, None) == {"num_replicas": 2}
    assert _scaling(1, 1, 4, 8.0) == {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                                             "initial_replicas": 1, "target_ongoing_requests": 8.0}}
    with pytest.raises(ValueError, match="min_replicas/max_replicas"):
        _scaling(1, 3, 2, None)
