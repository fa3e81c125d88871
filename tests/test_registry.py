"""Models by name (`mirfeat.registry`, `mirfeat.cache`, `mirfeat models`) against a local HTTP server.

The server listens on 127.0.0.1 only and serves fixture files under the registry's layout; it
honours Range / If-Range and can be told, per request, to answer 404, to cut a body short (the
full Content-Length announced), to reset the connection mid-way, or to send slowly. Every wait is
bounded: socket timeouts on both sides, subprocess timeouts, a join timeout for the server thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ESSENTIA_MODELS

import mirfeat
from mirfeat import cache as model_cache
from mirfeat.cache import ChecksumError, ConversionNeededError, ModelCache, OfflineError
from mirfeat.cli import main as cli_main
from mirfeat.errors import ModelError, ModelFetchError
from mirfeat.model import BUNDLED_DIR, Head, Model
from mirfeat.registry import ESSENTIA_BASE, MODELS, RegistryEntry, head_embedding

ROOT = Path(__file__).resolve().parent.parent
IDENTITY_ONNX = ESSENTIA_MODELS / "identity" / "identity2x2.onnx"  # 195 bytes: two [N, 3] inputs, two outputs
MUSICNN_ONNX = (BUNDLED_DIR / "msd-musicnn-1.onnx").read_bytes()
MUSICNN_JSON = (BUNDLED_DIR / "msd-musicnn-1.json").read_bytes()


def head_json(name: str, embedding: str, *, algorithm: str = "TensorflowPredict2D") -> bytes:
    """A small head's metadata: three labels on the identity graph's first input and output."""
    return json.dumps(
        {
            "name": name,
            "classes": ["a", "b", "c"],
            "schema": {
                "inputs": [{"name": "input1", "type": "float", "shape": [3]}],
                "outputs": [{"name": "output1", "type": "float", "shape": [3], "output_purpose": "predictions"}],
            },
            "inference": {
                "sample_rate": 16000,
                "algorithm": algorithm,
                "embedding_model": {"algorithm": "TensorflowPredictMusiCNN", "model_name": embedding},
            },
        }
    ).encode()


# -- the server ------------------------------------------------------------------------------------


class FixtureServer:
    """Files by URL path, faults queued per path (each used by one request), a log of requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[tuple]] = {}
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def put(self, entry: RegistryEntry, ext: str, body: bytes) -> None:
        self.files[self.path(entry, ext)] = body

    def path(self, entry: RegistryEntry, ext: str) -> str:
        return "/models/" + entry.url(ext, "").lstrip("/")

    def fault(self, entry: RegistryEntry, ext: str, *faults: tuple) -> None:
        self.faults.setdefault(self.path(entry, ext), []).extend(faults)

    def gets(self, entry: RegistryEntry, ext: str) -> list[tuple[str | None, str | None]]:
        with self.lock:
            return [(r, i) for p, r, i in self.requests if p == self.path(entry, ext)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a stalled client cannot hold a thread for ever

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                with server.lock:
                    server.requests.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
                    queue = server.faults.get(self.path) or []
                    fault = queue.pop(0) if queue else ("ok",)
                body = server.files.get(self.path)
                if body is None or fault[0] == "404":
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and self.headers.get("If-Range") in (None, etag):
                    start = int(match[1])
                    if start >= len(body):
                        self.send_error(416)
                        return
                payload = body[start:]
                self.send_response(206 if start else 200)
                if fault[0] != "unsized":
                    self.send_header("Content-Length", str(len(payload)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                # The body stops early: a Content-Length promised more ("truncate") or none was sent.
                if fault[0] in ("unsized", "truncate"):
                    self.wfile.write(payload[: fault[1]])
                    self.close_connection = True
                elif fault[0] == "reset":  # a connection reset (RST) mid-way, once the client has the bytes
                    self.wfile.write(payload[: fault[1]])
                    self.wfile.flush()
                    time.sleep(0.3)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif fault[0] == "gate":  # half the body, then the rest once the test opens the gate
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    fault[1].wait(timeout=30)
                    self.wfile.write(payload[len(payload) // 2 :])
                else:
                    self.wfile.write(payload)

            def finish(self):
                with contextlib.suppress(OSError):  # the socket was reset on purpose
                    super().finish()

        return Handler


@pytest.fixture
def server():
    srv = FixtureServer()
    yield srv
    srv.close()


# Entries served by the fixture server under a registry name of their own.
EMBED = RegistryEntry("fixture-musicnn-1", "feature-extractors/musicnn", "TensorflowPredictMusiCNN")
HEAD = RegistryEntry(
    "fixture_task-fixture-musicnn-1", "classification-heads/fixture_task", "TensorflowPredict2D", embedding=EMBED.name
)
PINNED = RegistryEntry(
    "pinned-musicnn-1",
    "feature-extractors/musicnn",
    "TensorflowPredictMusiCNN",
    sha256={"onnx": hashlib.sha256(MUSICNN_ONNX).hexdigest()},
)
UNKNOWN_ONNX = RegistryEntry("maybe-musicnn-1", "feature-extractors/musicnn", "TensorflowPredictMusiCNN", onnx=None)
FIXTURES = {e.name: e for e in (EMBED, HEAD, PINNED, UNKNOWN_ONNX)}


def serve_embedding(server: FixtureServer, entry: RegistryEntry = EMBED) -> None:
    server.put(entry, "onnx", MUSICNN_ONNX)
    server.put(entry, "json", MUSICNN_JSON)


def serve_head(server: FixtureServer) -> None:
    if not IDENTITY_ONNX.is_file():
        pytest.skip(f"{IDENTITY_ONNX} (shared test data) is absent")
    server.put(HEAD, "onnx", IDENTITY_ONNX.read_bytes())
    server.put(HEAD, "json", head_json(HEAD.name, EMBED.name))


def make_cache(server: FixtureServer | None, home: Path, **options) -> ModelCache:
    options.setdefault("registry", FIXTURES)
    options.setdefault("timeout", 5)
    options.setdefault("retries", 0)
    options.setdefault("say", lambda message: None)
    return ModelCache(home, mirror=server.base if server else "http://127.0.0.1:9/models/", **options)


def manifest(home: Path, name: str) -> dict:
    return json.loads((home / "manifests" / f"{name}.json").read_text())["files"]


# -- the registry ----------------------------------------------------------------------------------


def test_registry_covers_every_family_with_essentia_layout():
    by_algorithm: dict[str, int] = {}
    for entry in MODELS.values():
        by_algorithm[entry.algorithm] = by_algorithm.get(entry.algorithm, 0) + 1
        assert entry.url("json") == f"{ESSENTIA_BASE}{entry.directory}/{entry.name}.json"
        kinds = (
            "feature-extractors",
            "classification-heads",
            "audio-event-recognition",
            "tempo",
            "pitch",
            "autotagging",
        )
        assert entry.kind in kinds
        if entry.embedding:  # a head: its embedding model is in the table and takes audio
            assert entry.kind == "classification-heads"
            assert MODELS[entry.embedding].embedding is None
    for algorithm, least in [
        ("TensorflowPredictMusiCNN", 4),
        ("TensorflowPredictVGGish", 2),  # VGGish and YAMNet
        ("TensorflowPredictEffnetDiscogs", 8),
        ("TensorflowPredictMAEST", 8),
        ("TensorflowPredictTempoCNN", 3),
        ("TensorflowPredictCREPE", 5),
        ("TensorflowPredictFSDSINet", 4),
        ("TensorflowPredict2D", 100),
        ("TensorflowPredict", 8),  # MAEST genre heads
    ]:
        assert by_algorithm.get(algorithm, 0) >= least, algorithm
    assert {"audioset-vggish-3", "audioset-yamnet-1", "msd-musicnn-1", "discogs-maest-30s-pw-2"} <= MODELS.keys()


def test_registry_facts_from_the_spec():
    assert MODELS["genre_discogs400-discogs-effnet-1"].onnx is False  # its listing has no .onnx
    assert MODELS["discogs-effnet-bsdynamic-1"].onnx is True
    assert MODELS["discogs-effnet-bs64-1"].onnx is False
    assert MODELS["discogs-maest-30s-pw-2"].onnx is None  # published as ONNX, file name not seen
    assert MODELS["danceability-discogs-effnet-1"].embedding == "discogs-effnet-bsdynamic-1"
    assert MODELS["genre_discogs519-discogs-maest-30s-pw-519l-1"].embedding == "discogs-maest-30s-pw-519l-2"
    assert MODELS["genre_discogs400-discogs-maest-10s-dw-1"].algorithm == "TensorflowPredict"
    assert MODELS["mtt-discogs_track_embeddings-effnet-1"].embedding == "discogs_track_embeddings-effnet-bs64-1"
    assert MODELS["deam-audioset-vggish-2"].embedding == "audioset-vggish-3"
    assert MODELS["mtt-musicnn-1"].url("pb") == "https://essentia.upf.edu/models/autotagging/mtt/mtt-musicnn-1.pb"
    assert head_embedding("mood_happy-msd-musicnn-1") == "msd-musicnn-1"
    assert not any(e.sha256 for e in MODELS.values())  # nothing pinned; see mirfeat/registry.py
    with pytest.raises(ModelError, match="did you mean mood_sad-discogs-effnet-1"):
        model_cache.ModelCache().entry("mood_sad-discogs-efnet-1")


def test_import_mirfeat_stays_light():
    modules = ("mirfeat.cache", "mirfeat.registry", "urllib.request", "http.client")
    code = f"import sys, mirfeat; print(sorted(m for m in {modules!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_default_home_follows_the_platform_and_mirfeat_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MIRFEAT_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert model_cache.cache_home() == tmp_path / "xdg" / "mirfeat"
    monkeypatch.setenv("MIRFEAT_HOME", str(tmp_path / "mine"))
    assert model_cache.cache_home() == tmp_path / "mine"
    assert ModelCache().models_dir == tmp_path / "mine" / "models"


# -- downloading -----------------------------------------------------------------------------------


def test_first_download_then_cached_reuse(server, tmp_path):
    serve_embedding(server)
    store = make_cache(server, tmp_path)
    path = store.fetch(EMBED.name)
    assert path == tmp_path / "models" / "fixture-musicnn-1.onnx"
    assert path.read_bytes() == MUSICNN_ONNX
    files = manifest(tmp_path, EMBED.name)
    assert files["fixture-musicnn-1.onnx"]["sha256"] == hashlib.sha256(MUSICNN_ONNX).hexdigest()
    assert files["fixture-musicnn-1.json"]["url"] == server.base + "feature-extractors/musicnn/fixture-musicnn-1.json"
    assert not list((tmp_path / "models").glob("*.part*"))
    # The second fetch, and one by a fresh cache object, make no request.
    count = len(server.requests)
    assert store.fetch(EMBED.name) == path
    assert make_cache(server, tmp_path).fetch(EMBED.name) == path
    assert len(server.requests) == count
    assert isinstance(mirfeat.load_model(path), Model)


def test_pinned_hash_mismatch_is_an_error_and_keeps_nothing(server, tmp_path):
    server.put(PINNED, "json", MUSICNN_JSON)
    server.put(PINNED, "onnx", MUSICNN_ONNX[:-1] + b"\0")  # another file under the same name
    with pytest.raises(
        ChecksumError, match=r"pinned-musicnn-1: http://127\.0\.0\.1:\d+/models/.*pinned-musicnn-1\.onnx"
    ):
        make_cache(server, tmp_path).fetch(PINNED.name)
    assert isinstance(ChecksumError("x"), ModelError)
    assert not (tmp_path / "models" / "pinned-musicnn-1.onnx").exists()
    assert not list((tmp_path / "models").glob("*.part*"))
    server.put(PINNED, "onnx", MUSICNN_ONNX)  # the right file: the pin passes
    assert make_cache(server, tmp_path).fetch(PINNED.name).read_bytes() == MUSICNN_ONNX


def test_recorded_hash_is_checked_on_every_later_load(server, tmp_path, monkeypatch):
    serve_embedding(server)
    path = make_cache(server, tmp_path).fetch(EMBED.name)
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="fixture-musicnn-1.onnx has changed since it was stored"):
        make_cache(server, tmp_path).fetch(EMBED.name)
    assert make_cache(server, tmp_path).verify(EMBED.name)
    # --force downloads it again
    assert make_cache(server, tmp_path).fetch(EMBED.name, force=True).read_bytes() == MUSICNN_ONNX
    assert make_cache(server, tmp_path).verify(EMBED.name) == []


def test_truncated_body_is_resumed_with_a_range_request(server, tmp_path):
    serve_embedding(server)
    server.fault(EMBED, "onnx", ("truncate", 1_000_000))
    path = make_cache(server, tmp_path, retries=1).fetch(EMBED.name)
    assert path.read_bytes() == MUSICNN_ONNX
    assert [r for r, _ in server.gets(EMBED, "onnx")] == [None, "bytes=1000000-"]


def test_interrupted_download_resumes_in_a_later_call(server, tmp_path):
    serve_embedding(server)
    server.fault(EMBED, "onnx", ("reset", 700_000))
    with pytest.raises(ModelFetchError, match=r"fixture-musicnn-1: downloading http://127\.0\.0\.1:\d+/\S+ failed"):
        make_cache(server, tmp_path).fetch(EMBED.name)
    part = tmp_path / "models" / "fixture-musicnn-1.onnx.part"
    kept = part.stat().st_size
    assert 0 < kept < len(MUSICNN_ONNX)
    assert not (tmp_path / "models" / "fixture-musicnn-1.onnx").exists()
    path = make_cache(server, tmp_path).fetch(EMBED.name)  # the next call (or process) resumes
    assert path.read_bytes() == MUSICNN_ONNX
    range_header, if_range = server.gets(EMBED, "onnx")[-1]
    assert range_header == f"bytes={kept}-" and if_range  # If-Range: the ETag of the first response


def test_file_changed_on_the_server_restarts_instead_of_splicing(server, tmp_path):
    serve_embedding(server)
    server.fault(EMBED, "onnx", ("truncate", 500_000))
    with pytest.raises(ModelFetchError):
        make_cache(server, tmp_path).fetch(EMBED.name)
    middle = len(MUSICNN_ONNX) // 2  # inside the weights: still a loadable model
    changed = MUSICNN_ONNX[:middle] + bytes([MUSICNN_ONNX[middle] ^ 1]) + MUSICNN_ONNX[middle + 1 :]
    server.put(EMBED, "onnx", changed)  # new ETag: If-Range fails, the server sends it whole
    assert make_cache(server, tmp_path).fetch(EMBED.name).read_bytes() == changed


def test_a_body_cut_short_without_a_length_is_not_kept(server, tmp_path):
    serve_embedding(server)
    server.fault(EMBED, "onnx", ("unsized", len(MUSICNN_ONNX) // 2))
    with pytest.raises(ModelFetchError, match=r"fixture-musicnn-1: \S+ is not a loadable ONNX model \(cut short\?\)"):
        make_cache(server, tmp_path, retries=0).fetch(EMBED.name)
    assert not list((tmp_path / "models").glob("fixture-musicnn-1.onnx*"))  # nothing kept, no .part
    assert make_cache(server, tmp_path).fetch(EMBED.name).read_bytes() == MUSICNN_ONNX  # the next try is whole


def test_404_names_the_model_and_the_url(server, tmp_path):
    serve_embedding(server)
    server.fault(EMBED, "onnx", ("404",))
    url = r"http://127\.0\.0\.1:\d+/models/feature-extractors/musicnn/fixture-musicnn-1\.onnx"
    with pytest.raises(ModelFetchError, match=rf"fixture-musicnn-1: {url} not found \(HTTP 404\) on the mirror"):
        make_cache(server, tmp_path).fetch(EMBED.name)


def test_server_down(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/models/"
    store = ModelCache(tmp_path, mirror=mirror, registry=FIXTURES, timeout=5, retries=1, say=lambda m: None)
    started = time.monotonic()
    expected = rf"fixture-musicnn-1: downloading {re.escape(mirror)}\S+ failed after 2 attempt\(s\): cannot reach"
    with pytest.raises(ModelFetchError, match=expected):
        store.fetch(EMBED.name)
    assert time.monotonic() - started < 10


def test_offline_never_touches_the_network(server, tmp_path, monkeypatch):
    serve_embedding(server)
    monkeypatch.setenv("MIRFEAT_OFFLINE", "1")
    expected = (
        r"fixture-musicnn-1: not in the cache .* MIRFEAT_OFFLINE .* missing: "
        r"fixture-musicnn-1\.json \(http://127\.0\.0\.1:\d+/\S+\.json\), fixture-musicnn-1\.onnx"
    )
    with pytest.raises(OfflineError, match=expected):
        make_cache(server, tmp_path).fetch(EMBED.name)
    assert server.requests == []
    monkeypatch.delenv("MIRFEAT_OFFLINE")
    path = make_cache(server, tmp_path).fetch(EMBED.name)
    monkeypatch.setenv("MIRFEAT_OFFLINE", "1")
    count = len(server.requests)
    assert make_cache(server, tmp_path).fetch(EMBED.name) == path  # cached: fine offline
    assert len(server.requests) == count


def test_head_pulls_in_its_embedding_model(server, tmp_path):
    serve_embedding(server)
    serve_head(server)
    store = make_cache(server, tmp_path)
    path = store.fetch(HEAD.name)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "fixture-musicnn-1.json",
        "fixture-musicnn-1.onnx",
        "fixture_task-fixture-musicnn-1.json",
        "fixture_task-fixture-musicnn-1.onnx",
    ]
    head = mirfeat.load_model(path)
    assert isinstance(head, Head)
    assert head.embedding_model.path == tmp_path / "models" / "fixture-musicnn-1.onnx"  # found beside the head


def test_onnx_unknown_falls_back_to_the_pb(server, tmp_path, monkeypatch):
    server.put(UNKNOWN_ONNX, "json", MUSICNN_JSON)
    server.put(UNKNOWN_ONNX, "pb", b"\x0a\x0cnot really a graph")
    monkeypatch.setattr(model_cache, "conversion_available", lambda: False)
    expected = (
        r"maybe-musicnn-1: Essentia publishes this model as a TensorFlow graph only \(http://\S+maybe-musicnn-1\.pb\)"
        r".*pip install 'mirfeat\[convert\]' && python -m conversion convert \S+maybe-musicnn-1\.pb"
    )
    with pytest.raises(ConversionNeededError, match=expected):
        make_cache(server, tmp_path).fetch(UNKNOWN_ONNX.name)
    assert [r for r, _ in server.gets(UNKNOWN_ONNX, "onnx")] == [None]  # tried once: 404
    assert (tmp_path / "models" / "maybe-musicnn-1.pb").is_file()  # kept for the conversion
    count = len(server.requests)
    monkeypatch.setenv("MIRFEAT_OFFLINE", "1")  # converting later needs no network
    with pytest.raises(ConversionNeededError):
        make_cache(server, tmp_path).fetch(UNKNOWN_ONNX.name)
    assert len(server.requests) == count


def test_an_html_page_is_not_taken_for_a_model(server, tmp_path):
    serve_embedding(server)
    server.put(EMBED, "onnx", b"<html><body>Please log in</body></html>")
    with pytest.raises(ModelFetchError, match="fixture-musicnn-1.onnx is an HTML/XML page, not a model"):
        make_cache(server, tmp_path).fetch(EMBED.name)
    assert not (tmp_path / "models" / "fixture-musicnn-1.onnx").exists()


SECOND_PROCESS = """
import logging
import sys
from mirfeat.cache import ModelCache
logging.basicConfig(level=logging.INFO)  # the cache's progress lines, on stderr
from mirfeat.registry import RegistryEntry
entry = RegistryEntry("fixture-musicnn-1", "feature-extractors/musicnn", "TensorflowPredictMusiCNN")
store = ModelCache(sys.argv[1], mirror=sys.argv[2], registry={entry.name: entry}, timeout=20, lock_timeout=60)
print(store.fetch(entry.name))
"""


def test_a_second_process_waits_for_the_first_and_reuses_its_download(server, tmp_path):
    serve_embedding(server)
    gate = threading.Event()
    server.fault(EMBED, "onnx", ("gate", gate))  # the first process's download stops half-way
    command = [sys.executable, "-c", SECOND_PROCESS, str(tmp_path), server.base]
    logs = [tmp_path / "first.err", tmp_path / "second.err"]
    with open(logs[0], "w") as err1, open(logs[1], "w") as err2:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err1, text=True)
        try:
            deadline = time.monotonic() + 60
            while not server.gets(EMBED, "onnx") and time.monotonic() < deadline:  # the first holds the lock
                time.sleep(0.02)
            second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err2, text=True)
            while "waiting for another process" not in logs[1].read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            gate.set()
        out1, _ = first.communicate(timeout=60)
        out2, _ = second.communicate(timeout=60)
    errors = logs[0].read_text() + logs[1].read_text()
    assert first.returncode == 0 and second.returncode == 0, errors
    assert out1 == out2 == f"{tmp_path / 'models' / 'fixture-musicnn-1.onnx'}\n"
    assert "fixture-musicnn-1: waiting for another process fetching it" in logs[1].read_text()
    assert len(server.gets(EMBED, "onnx")) == 1 and len(server.gets(EMBED, "json")) == 1  # downloaded once
    assert (tmp_path / "models" / "fixture-musicnn-1.onnx").read_bytes() == MUSICNN_ONNX


# -- load_model and the command line, through the real registry and a mirror -----------------------


@pytest.fixture
def mirror_env(server, tmp_path, monkeypatch):
    """MIRFEAT_HOME in tmp_path and MIRFEAT_MIRROR on the fixture server."""
    monkeypatch.setenv("MIRFEAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIRFEAT_MIRROR", server.base)
    monkeypatch.delenv("MIRFEAT_OFFLINE", raising=False)
    return tmp_path / "home"


def test_load_model_fetches_a_head_and_its_embedding_model_by_name(server, mirror_env):
    head_entry, embed_entry = MODELS["danceability-msd-musicnn-1"], MODELS["msd-musicnn-1"]
    serve_embedding(server, embed_entry)
    if not IDENTITY_ONNX.is_file():
        pytest.skip(f"{IDENTITY_ONNX} (shared test data) is absent")
    server.put(head_entry, "onnx", IDENTITY_ONNX.read_bytes())
    server.put(head_entry, "json", head_json(head_entry.name, "msd-musicnn-1"))
    head = mirfeat.load_model("danceability-msd-musicnn-1")
    assert isinstance(head, Head)
    assert head.path == mirror_env / "models" / "danceability-msd-musicnn-1.onnx"
    # The head's embedding model was fetched beside it (and wins over the bundled copy there).
    assert head.embedding_model.path == mirror_env / "models" / "msd-musicnn-1.onnx"
    assert mirfeat.load_model("danceability-msd-musicnn-1.onnx").path == head.path  # the facade's spelling
    assert mirfeat.load_model("msd-musicnn-1").path == BUNDLED_DIR / "msd-musicnn-1.onnx"  # bundled first


def test_load_model_of_a_pb_only_model_says_how_to_convert(server, mirror_env, monkeypatch):
    entry = MODELS["genre_discogs400-discogs-effnet-1"]
    server.put(entry, "json", head_json(entry.name, "discogs-effnet-bs64-1"))
    server.put(entry, "pb", b"\x0a\x0cgraph bytes")
    monkeypatch.setattr(model_cache, "conversion_available", lambda: False)
    expected = r"genre_discogs400-discogs-effnet-1: Essentia publishes .* graph only .*pip install 'mirfeat\[convert\]'"
    with pytest.raises(ModelFetchError, match=expected):
        mirfeat.load_model("genre_discogs400-discogs-effnet-1")
    assert server.gets(entry, "onnx") == []  # the registry knows there is none
    assert (mirror_env / "models" / "genre_discogs400-discogs-effnet-1.pb").is_file()


def test_unknown_names_keep_the_old_error(mirror_env, server):
    with pytest.raises(FileNotFoundError, match="not a bundled model"):
        mirfeat.load_model("no-such-model-1")
    assert server.requests == []


def test_cli_models_list_get_path_verify(server, mirror_env, capsys):
    entry = MODELS["audioset-vggish-3"]
    serve_embedding(server, entry)  # any graph will do under this name

    def run(*argv: str) -> tuple[int, str, str]:
        out = io.StringIO()
        code = cli_main(["models", *argv], out=out)
        return code, out.getvalue(), capsys.readouterr().err

    code, out, _ = run("list")
    assert code == 0
    assert re.search(r"^genre_discogs400-discogs-effnet-1 +pb +discogs-effnet-bsdynamic-1$", out, re.M)
    assert re.search(r"^crepe-full-1 +onnx\|pb", out, re.M)  # runnable: no asterisk
    assert run("path", "audioset-vggish-3")[0] == 1
    code, out, err = run("get", "audioset-vggish-3")
    assert code == 0 and out.strip() == str(mirror_env / "models" / "audioset-vggish-3.onnx")
    assert "downloading http://127.0.0.1" in err
    assert run("path", "audioset-vggish-3")[1].strip() == out.strip()
    assert re.search(r"^audioset-vggish-3 +onnx +- +yes$", run("list", "--installed")[1], re.M)
    assert run("verify") == (0, "ok      audioset-vggish-3\n", "")
    onnx = mirror_env / "models" / "audioset-vggish-3.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])
    code, out, _ = run("verify")
    assert code == 1 and "FAILED  audioset-vggish-3: " in out and "has changed since it was stored" in out
    code, _, err = run("get", "no-such-model-1")
    assert code == 2 and "error: no-such-model-1: not a model in mirfeat's registry" in err


# -- conversion of a .pb-only model (TensorFlow, in a subprocess) ----------------------------------

EMOMUSIC = RegistryEntry(
    "emomusic-msd-musicnn-1", "classification-heads/emomusic", "TensorflowPredict2D", onnx=None, embedding=None
)


@pytest.mark.tensorflow
@pytest.mark.slow
def test_pb_only_model_is_converted_after_download(server, tmp_path):
    from conftest import ESSENTIA_MODELS

    pb = ESSENTIA_MODELS / "classification_heads" / "emomusic-msd-musicnn-1.pb"
    if not pb.is_file():
        pytest.skip(f"{pb} (shared test data) is absent")
    metadata = {
        "name": "emoMusic arousal/valence",
        "classes": ["valence", "arousal"],
        "schema": {
            "inputs": [{"name": "flatten_in_input", "type": "float", "shape": [200]}],
            "outputs": [{"name": "dense_out", "type": "float", "shape": [2], "output_purpose": "predictions"}],
        },
        "inference": {
            "sample_rate": 16000,
            "algorithm": "TensorflowPredict2D",
            "embedding_model": {"algorithm": "TensorflowPredictMusiCNN", "model_name": "msd-musicnn-1"},
        },
    }
    server.put(EMOMUSIC, "json", json.dumps(metadata).encode())
    server.put(EMOMUSIC, "pb", pb.read_bytes())
    store = make_cache(server, tmp_path, registry={EMOMUSIC.name: EMOMUSIC}, say=print)
    path = store.fetch(EMOMUSIC.name)  # .onnx: 404, then the .pb, converted in a subprocess
    assert "tensorflow" not in sys.modules
    files = manifest(tmp_path, EMOMUSIC.name)
    assert files["emomusic-msd-musicnn-1.pb"]["url"].endswith("/emomusic-msd-musicnn-1.pb")
    assert files["emomusic-msd-musicnn-1.onnx"]["converted_from"] == "emomusic-msd-musicnn-1.pb"
    assert store.verify(EMOMUSIC.name) == []
    head = mirfeat.load_model(path)
    assert isinstance(head, Head)
    out = head.predict(np.random.default_rng(0).standard_normal((4, 200)).astype(np.float32))
    assert next(iter(out.values())).shape == (4, 2)
    shutil.rmtree(tmp_path / "locks")  # a second fetch reads the manifest: no request, no conversion
    count = len(server.requests)
    assert store.fetch(EMOMUSIC.name) == path and len(server.requests) == count
