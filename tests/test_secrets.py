"""Credentials given to the command line never come back out of it: not in an error line, the summary, the
repr of a store, a log line of a client, nor (with JINAV3_DEBUG=1) a traceback.

The servers are real protocol endpoints on loopback that echo the credentials they receive in their error
messages, the way real servers and clients sometimes do: a gRPC server speaking Milvus' protocol, an HTTP
server answering like Qdrant, the Pinecone test double; plus ports where nothing listens.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jinav3.errors import InvalidArgumentError
from jinav3.integrations.cli import main
from jinav3.integrations.stores.uri import open_store, parse_store, with_credentials
from jinav3.secrets import redact, scrub, uri_secrets

pytestmark = pytest.mark.slow  # full tier: real servers and subprocesses


REPO = Path(__file__).resolve().parent.parent
PASSAGES = REPO / "examples" / "data" / "passages.jsonl"
PASSWORD = "S3cretPw-9f2c"
KEY = "K3ySecret-77aa"
QUERY_TOKEN = "T0kenQuery-5b1e"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JINAV3_MODEL", raising=False)
    monkeypatch.delenv("JINAV3_DEBUG", raising=False)
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)


def cli_subprocess(argv, cwd, golden_dir, **env):
    """`python -m jinav3.integrations.cli` with the tiny model, as a user runs it."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "JINAV3_MODEL": str(golden_dir), **env}
    for name in ("JINAV3_DEBUG", "PINECONE_API_KEY"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "jinav3.integrations.cli", *map(str, argv), "--device", "cpu"],
                          cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked:\n{text}"


def assert_one_error_line(stderr: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jinav3: error: "), stderr
    assert "Traceback" not in stderr


def assert_failure_report(done, debug: bool) -> None:
    """Exit 1; one line, or with JINAV3_DEBUG the traceback (printed by main) ending in that line."""
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    if debug:
        assert "Traceback (most recent call last)" in done.stderr
        assert done.stderr.splitlines()[-1].startswith("jinav3: error: ")
    else:
        assert_one_error_line(done.stderr)


# ============================================================================================ servers
@pytest.fixture
def milvus_grpc_double():
    """A gRPC server speaking Milvus' protocol: it accepts the connection, records the token the client sent
    and refuses every collection lookup with a message quoting that token."""
    grpc = pytest.importorskip("grpc")
    milvus_grpc = pytest.importorskip("pymilvus.grpc_gen.milvus_pb2_grpc")
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    tokens: list[str] = []

    def token(context) -> str:
        sent = dict(context.invocation_metadata()).get("authorization", "")
        return base64.b64decode(sent).decode() if sent else ""

    class Milvus(milvus_grpc.MilvusServiceServicer):
        def Connect(self, request, context):
            tokens.append(token(context))
            return milvus_pb2.ConnectResponse(status=common_pb2.Status(code=0))

        def DescribeCollection(self, request, context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"access denied for credentials {token(context)!r}")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    milvus_grpc.add_MilvusServiceServicer_to_server(Milvus(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, tokens
    finally:
        server.stop(grace=None)


@pytest.fixture
def qdrant_server():
    """An HTTP server answering like a Qdrant that refuses the API key it got, quoting it (403)."""
    keys: list[str] = []

    class Qdrant(BaseHTTPRequestHandler):
        def _refuse(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("api-key", "")
            keys.append(key)
            body = json.dumps({"status": {"error": f"Forbidden: api key {key!r} is not valid"}, "time": 0}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _refuse

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Qdrant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], keys
    finally:
        server.shutdown()
        server.server_close()


# ============================================================================================ redact, scrub
@pytest.mark.parametrize("uri, shown", [
    ("milvus+http://root:S3cret@host:19530", "milvus+http://root:***@host:19530"),
    ("qdrant+https://T0ken@x.cloud.qdrant.io:6333", "qdrant+https://***@x.cloud.qdrant.io:6333"),
    ("qdrant+http://user:K3y@h:1?api_key=A1&x=2&token=B2#frag",
     "qdrant+http://user:***@h:1?api_key=***&x=2&token=***#frag"),
    ("milvus+http://h:1/db?key=k&password=p&secret=s&Access_Token=t&lang=de",
     "milvus+http://h:1/db?key=***&password=***&secret=***&Access_Token=***&lang=de"),
    ("milvus+http://root:p%40ss@h:1", "milvus+http://root:***@h:1"),
    ("qdrant+http://localhost:6333", "qdrant+http://localhost:6333"),
    ("qdrant:./data@home?token=x", "qdrant:./data@home?token=x"),  # a local path has no user info or query
    ("pinecone:my-index", "pinecone:my-index"),
])
def test_redact(uri, shown):
    assert redact(uri) == shown


@pytest.mark.parametrize("target, shown", [
    ("/v1/embeddings?api_key=A1&x=2&token=B2", "/v1/embeddings?api_key=***&x=2&token=***"),
    ("/v1/embeddings?apikey=a&access_token=b&password=c&secret=d&key=e&lang=de",
     "/v1/embeddings?apikey=***&access_token=***&password=***&secret=***&key=***&lang=de"),
    ("/v1/embeddings?API_KEY=a&Api%5FKey=b&my+token=c", "/v1/embeddings?API_KEY=***&Api%5FKey=***&my+token=***"),
    ("/v1/embeddings?token", "/v1/embeddings?token"),  # no value to hide
    ("/v1/embeddings", "/v1/embeddings"),
    ("/health?x=1", "/health?x=1"),
])
def test_redact_target(target, shown):
    """What jinav3 serve writes to its access log for a request target (its key by name is never logged)."""
    from jinav3.secrets import redact_target

    assert redact_target(target) == shown


def test_store_uri_shows_and_parses_without_its_credentials():
    store = parse_store(f"milvus+http://root:{PASSWORD}@127.0.0.1:19530?token={QUERY_TOKEN}")
    assert store.shown == "milvus+http://root:***@127.0.0.1:19530?token=***"
    assert store.target == f"http://127.0.0.1:19530?token={QUERY_TOKEN}" and store.user_info == f"root:{PASSWORD}"
    assert_no_secret(repr(store), PASSWORD, QUERY_TOKEN)
    assert store.place("docs") == "milvus+http://root:***@127.0.0.1:19530?token=*** collection 'docs'"
    # the credentials go to the client as its token, never inside the URL it may echo
    assert store.connection() == {"uri": store.target, "token": f"root:{PASSWORD}"}
    qdrant = parse_store(f"qdrant+https://user:{KEY}@h:6333")
    assert qdrant.connection() == {"url": "https://h:6333", "api_key": KEY}
    assert parse_store(f"qdrant+https://{KEY}@h:6333").connection()["api_key"] == KEY
    with pytest.raises(InvalidArgumentError) as refused:
        parse_store(f"milvus://root:{PASSWORD}@host:19530")  # a parse error shows the URI redacted
    assert "milvus+http://root:***@host:19530" in str(refused.value)
    assert_no_secret(str(refused.value), PASSWORD)


def test_scrub():
    secrets = uri_secrets("qdrant+http://u:p%40ss@h?token=abc")
    assert sorted(secrets) == ["abc", "p%40ss", "p@ss"]
    assert scrub("GET http://u:p@ss@h?token=abc failed", secrets) == "GET http://u:***@h?token=*** failed"
    assert scrub("nothing secret", []) == "nothing secret"


# ============================================================================================ through the CLI
@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_milvus_server_credentials_reach_the_server_and_never_the_output(debug, tmp_path, golden_dir,
                                                                        milvus_grpc_double):
    port, tokens = milvus_grpc_double
    done = cli_subprocess(["search", "x", "--store", f"milvus+http://root:{PASSWORD}@127.0.0.1:{port}"], tmp_path,
                          golden_dir, **({"JINAV3_DEBUG": "1"} if debug else {}))
    assert tokens and set(tokens) == {f"root:{PASSWORD}"}  # the user info is the client's token
    assert_failure_report(done, debug)  # pymilvus' logged traceback of the failed call is silenced unless debugging
    assert "PERMISSION_DENIED" in done.stderr and "milvus+http://root:***@127.0.0.1" in done.stderr
    assert_no_secret(done.stdout + done.stderr, PASSWORD)


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_qdrant_server_credentials_reach_the_server_and_never_the_output(debug, tmp_path, golden_dir, qdrant_server):
    port, keys = qdrant_server
    store = f"qdrant+http://user:{KEY}@127.0.0.1:{port}?api_key={QUERY_TOKEN}"
    done = cli_subprocess(["index", PASSAGES, "--store", store], tmp_path, golden_dir,
                          **({"JINAV3_DEBUG": "1"} if debug else {}))
    assert keys and set(keys) == {KEY}  # the password of the user info is the API key
    assert_failure_report(done, debug)
    assert "403" in done.stderr and "***" in done.stderr
    assert_no_secret(done.stdout + done.stderr, KEY, QUERY_TOKEN)


def test_api_key_env_goes_to_the_server_and_never_the_output(tmp_path, golden_dir, qdrant_server, milvus_grpc_double):
    for scheme, (port, received), variable in (("qdrant", qdrant_server, "MY_QDRANT_KEY"),
                                               ("milvus", milvus_grpc_double, "MY_MILVUS_TOKEN")):
        argv = ["search", "x", "--store", f"{scheme}+http://127.0.0.1:{port}", "--api-key-env", variable]
        done = cli_subprocess(argv, tmp_path, golden_dir, **{variable: KEY})
        assert received and set(received) == {KEY}, scheme
        assert_failure_report(done, False)
        assert_no_secret(done.stdout + done.stderr, KEY)


@pytest.mark.parametrize("store", [f"milvus+http://root:{PASSWORD}@127.0.0.1:1", f"qdrant+http://{KEY}@127.0.0.1:1"])
def test_unreachable_server_fails_fast_in_one_line(store, tmp_path, golden_dir):
    done = cli_subprocess(["search", "x", "--store", store], tmp_path, golden_dir)
    assert_failure_report(done, False)
    assert_no_secret(done.stdout + done.stderr, PASSWORD, KEY)
    assert redact(store) in done.stderr


@pytest.mark.parametrize("argv, env, needles", [
    (["--store", "qdrant+http://127.0.0.1:1", "--api-key-env", "JINAV3_TEST_UNSET"], {},
     ["$JINAV3_TEST_UNSET is not set"]),
    (["--store", "milvus+http://127.0.0.1:1", "--api-key-env", "JINAV3_TEST_EMPTY"], {"JINAV3_TEST_EMPTY": ""},
     ["$JINAV3_TEST_EMPTY is empty"]),
    (["--store", f"milvus+http://root:{PASSWORD}@127.0.0.1:1", "--api-key-env", "JINAV3_TEST_KEY"],
     {"JINAV3_TEST_KEY": KEY}, ["credentials already", "root:***@"]),
    (["--store", "qdrant:./store", "--api-key-env", "JINAV3_TEST_KEY"], {"JINAV3_TEST_KEY": KEY}, ["local store"]),
    (["--store", "pinecone:docs", "--api-key-env", KEY], {}, ["NAME of an environment variable"]),  # the key itself
    (["--store", "pinecone:docs"], {}, ["PINECONE_API_KEY", "--api-key-env"]),
])
def test_credential_usage_errors_name_the_variable_not_the_value(argv, env, needles, capsys, monkeypatch, golden_dir,
                                                                 tmp_path):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in (["index", PASSAGES], ["search", "x"]):
        code = main([*map(str, command), *argv, "--model", str(golden_dir), "--device", "cpu"])
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert_one_error_line(err)
        for needle in needles:
            assert needle in err, (needle, err)
        assert_no_secret(err, KEY, PASSWORD)
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


def test_pinecone_key_from_api_key_env(capsys, monkeypatch, golden_dir, encoder):
    pytest.importorskip("pinecone")
    from doubles.pinecone_double import PineconeDouble

    wrong = "Wr0ngKey-31c4"
    with PineconeDouble(api_key=KEY) as double:
        monkeypatch.setenv("PINECONE_CONTROLLER_HOST", double.host)
        monkeypatch.setenv("MY_PINECONE_KEY", KEY)
        model = ["--model", str(golden_dir), "--device", "cpu"]
        code = main(["index", str(PASSAGES), "--store", "pinecone:docs", "--api-key-env", "MY_PINECONE_KEY", *model])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "into pinecone:docs namespace 'jinav3'; it now holds 300 entries" in out
        assert_no_secret(out + err, KEY)
        assert len(double.vectors("docs", "jinav3")) == 300

        store = with_credentials(parse_store("pinecone:docs"), "MY_PINECONE_KEY")
        assert_no_secret(repr(store), KEY)
        opened = open_store(store, "jinav3", encoder, create=False, adopt_signature=True)
        try:
            assert_no_secret(repr(opened), KEY)
            assert opened.count() == 300
        finally:
            opened.close()

        monkeypatch.setenv("PINECONE_API_KEY", wrong)  # the default variable, a key the service refuses
        code = main(["search", "tea", "--store", "pinecone:docs", *model])
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        assert_one_error_line(err)
        assert_no_secret(err, KEY, wrong)


def test_pinecone_refused_key_with_debug(tmp_path, golden_dir):
    pytest.importorskip("pinecone")
    from doubles.pinecone_double import PineconeDouble

    wrong = "Wr0ngKey-31c4"
    with PineconeDouble(api_key=KEY) as double:
        argv = ["search", "tea", "--store", "pinecone:docs", "--api-key-env", "MY_PINECONE_KEY"]
        done = cli_subprocess(argv, tmp_path, golden_dir, JINAV3_DEBUG="1", MY_PINECONE_KEY=wrong,
                              PINECONE_CONTROLLER_HOST=double.host)
    assert_failure_report(done, True)
    assert_no_secret(done.stdout + done.stderr, KEY, wrong)
