"""Models by name: Essentia's published models downloaded on first use, verified, kept in a cache.

`load_model("genre_discogs400-discogs-effnet-1")` and `mirfeat models get NAME` come here for a name
in `mirfeat.registry` that is neither a file nor a bundled model. Layout under the cache home
(`MIRFEAT_HOME`, else the platform's cache folder: `$XDG_CACHE_HOME/mirfeat` or `~/.cache/mirfeat`,
`~/Library/Caches/mirfeat`, `%LOCALAPPDATA%\\mirfeat\\Cache`):

    models/NAME.onnx, NAME.json   what `load_model` reads; a head's embedding model lies beside it
    models/NAME.pb                a .pb-only model's graph, kept after its conversion to NAME.onnx
    models/FILE.part              a download in progress, resumed with an HTTP Range request
    models/FILE.part.etag         the server's ETag (or Last-Modified) for that .part (If-Range)
    manifests/NAME.json           sha256, size and source of each file of NAME (written as each lands)
    locks/NAME.lock               held (flock / msvcrt) by the process fetching NAME: others wait

Each file is downloaded to FILE.part, its sha256 checked against the registry's pin (a mismatch
deletes it and is an error), then renamed into place; without a pin the sha256 is recorded in the
manifest, and every later load checks every file against it. A .pb-only model is converted by
`python -m conversion convert` in a subprocess (TensorFlow never loads in this process) when the
convert extra is installed; otherwise the error says how. A head brings its embedding model.

Environment: `MIRFEAT_HOME`, `MIRFEAT_MIRROR` (a base URL laid out like Essentia's site, replacing
https://essentia.upf.edu/models/), `MIRFEAT_OFFLINE=1` (never touch the network: a missing file is
an error naming it), `MIRFEAT_TIMEOUT` (seconds a socket may stall, default 60).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from mirfeat.errors import ModelFetchError
from mirfeat.filelock import try_lock, unlock
from mirfeat.registry import ESSENTIA_BASE, MODELS, RegistryEntry, lookup

log = logging.getLogger(__name__)

CHUNK = 1 << 16
USER_AGENT = "mirfeat (https://essentia.upf.edu/models/ client; python urllib)"


class ChecksumError(ModelFetchError):
    """A downloaded or cached file's sha256 differs from the registry's pin or the recorded one."""


class OfflineError(ModelFetchError):
    """`MIRFEAT_OFFLINE=1` and a file of the model is not in the cache."""


class ConversionNeededError(ModelFetchError):
    """A .pb-only model was downloaded, but the convert extra (TensorFlow) is not installed."""


class _NotFound(Exception):
    """HTTP 404 / 410 for a URL."""


class _Retryable(Exception):
    """A failure a new attempt may get past (connection lost, timeout, 5xx); the .part is kept."""


def default_home() -> Path:
    """The platform's per-user cache folder for mirfeat (platformdirs' user_cache_dir convention)."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home() / "AppData" / "Local") / "mirfeat" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "mirfeat"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "mirfeat"


def cache_home() -> Path:
    """`MIRFEAT_HOME`, else `default_home()`."""
    home = os.environ.get("MIRFEAT_HOME")
    return Path(home).expanduser() if home else default_home()


def offline_from_env() -> bool:
    return os.environ.get("MIRFEAT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _env_seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ModelFetchError(f"{variable}={text!r}: must be a number of seconds above 0")
    return value


def conversion_available() -> bool:
    """Whether `python -m conversion convert` can run here (the convert extra), found without importing it."""
    return all(importlib.util.find_spec(module) is not None for module in ("conversion", "tensorflow", "tf2onnx"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ModelCache:
    """Essentia's published models by name, fetched into `home` (default `cache_home()`).

    mirror: base URL with the site's layout (default `MIRFEAT_MIRROR`, else Essentia's site).
    offline: never touch the network (default `MIRFEAT_OFFLINE`). registry: name -> entry (default
    `mirfeat.registry.MODELS`). timeout: seconds a socket may stall. retries: new attempts after a
    lost connection, a timeout or a 5xx, each resuming the .part. lock_timeout: seconds to wait for
    another process fetching the same model. say: where progress lines go (default: this module's
    logger at INFO; `mirfeat` on the command line shows them on stderr).
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        *,
        mirror: str | None = None,
        offline: bool | None = None,
        registry: Mapping[str, RegistryEntry] | None = None,
        timeout: float | None = None,
        retries: int = 2,
        lock_timeout: float = 3600.0,
        convert_timeout: float = 3600.0,
        say: Callable[[str], None] | None = None,
    ):
        self.home = Path(home) if home is not None else cache_home()
        self.base = mirror or os.environ.get("MIRFEAT_MIRROR") or ESSENTIA_BASE
        self.offline = offline_from_env() if offline is None else offline
        self.registry = MODELS if registry is None else registry
        self.timeout = timeout if timeout is not None else _env_seconds("MIRFEAT_TIMEOUT", 60.0)
        self.retries = retries
        self.lock_timeout = lock_timeout
        self.convert_timeout = convert_timeout
        self.say = say or log.info

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def entry(self, name: str) -> RegistryEntry:
        return lookup(name, self.registry)

    def url(self, entry: RegistryEntry, ext: str) -> str:
        return entry.url(ext, self.base)

    def model_path(self, name: str) -> Path:
        return self.models_dir / f"{name}.onnx"

    # -- what is in the cache -------------------------------------------------------------------

    def cached(self, name: str) -> Path | None:
        """The .onnx of `name` when the cache holds it complete (files present; hashes not read)."""
        files = self._manifest(name)
        onnx = self.model_path(name)
        complete = {onnx.name, f"{name}.json"} <= files.keys()
        return onnx if complete and all((self.models_dir / f).is_file() for f in files) else None

    def installed(self) -> list[str]:
        """Names of the models the cache holds complete."""
        manifests = sorted((self.home / "manifests").glob("*.json"))
        return [p.stem for p in manifests if self.cached(p.stem)]

    def verify(self, name: str) -> list[str]:
        """What is wrong with the cached files of `name` (empty: each matches its recorded sha256 and
        the registry's pin)."""
        files = self._manifest(name)
        if not files:
            return [f"{name}: not in the cache ({self.models_dir})"]
        entry = self.registry.get(name)
        problems = []
        for file, record in files.items():
            path = self.models_dir / file
            if not path.is_file():
                problems.append(f"{name}: {path} is missing")
            elif problem := self._check_file(name, entry, path, record):
                problems.append(problem)
        if f"{name}.onnx" not in files:
            problems.append(f"{name}: no {name}.onnx yet (a .pb not converted?)")
        return problems

    # -- fetching -------------------------------------------------------------------------------

    def fetch(self, name: str, *, embedding: bool = True, force: bool = False) -> Path:
        """The verified .onnx of `name`, downloaded (and converted) first if the cache lacks it; a
        head's embedding model is fetched too. force: delete the cached files and download again."""
        entry = self.entry(name)
        path = self._ensure(entry, force)
        if embedding and entry.embedding:
            self.fetch(entry.embedding, embedding=False, force=False)
        return path

    def _ensure(self, entry: RegistryEntry, force: bool) -> Path:
        name = entry.name
        with self._locked(name):
            if force:
                self._remove(name)
            files = self._verified_files(entry)
            onnx, meta, graph = f"{name}.onnx", f"{name}.json", f"{name}.pb"
            if onnx in files and meta in files:
                return self.models_dir / onnx
            needs_network = meta not in files or (onnx not in files and graph not in files)
            if needs_network and self.offline:
                raise self._offline_error(entry, files)
            if meta not in files or (onnx not in files and files[meta].get("converted_from")):
                try:
                    self._download(entry, "json", files)
                except _NotFound:
                    raise self._not_found(entry, "json") from None
            if onnx not in files and graph not in files and entry.onnx is not False:
                try:
                    self._download(entry, "onnx", files)
                except _NotFound:
                    if entry.onnx:
                        raise self._not_found(entry, "onnx") from None
                    self.say(f"{name}: no .onnx at {self.url(entry, 'onnx')}; fetching the TensorFlow graph")
            if onnx not in files:
                if graph not in files:
                    try:
                        self._download(entry, "pb", files)
                    except _NotFound:
                        raise self._not_found(entry, "pb") from None
                self._convert(entry, files)
            return self.models_dir / onnx

    def _not_found(self, entry: RegistryEntry, ext: str) -> ModelFetchError:
        url = self.url(entry, ext)
        where = "the mirror" if self.base != ESSENTIA_BASE else "Essentia's site"
        status = " (HTTP 404)" if url.startswith(("http:", "https:")) else ""
        return ModelFetchError(f"{entry.name}: {url} not found{status} on {where}")

    def _offline_error(self, entry: RegistryEntry, files: Mapping[str, dict]) -> OfflineError:
        wanted = ["json", "onnx" if entry.onnx is not False else "pb"]
        missing = [
            f"{entry.name}.{ext} ({self.url(entry, ext)})" for ext in wanted if f"{entry.name}.{ext}" not in files
        ]
        return OfflineError(
            f"{entry.name}: not in the cache ({self.models_dir}) and MIRFEAT_OFFLINE is set, so nothing is "
            f"downloaded; missing: {', '.join(missing)}. Fetch it where the network is reachable "
            f"(`mirfeat models get {entry.name}`) and copy the cache folder, or unset MIRFEAT_OFFLINE"
        )

    def _download(self, entry: RegistryEntry, ext: str, files: dict[str, dict]) -> None:
        """Download `<name>.<ext>` into the models folder and record it in the manifest."""
        url = self.url(entry, ext)
        dest = self.models_dir / f"{entry.name}.{ext}"
        digest, size = self._get(entry, url, dest, entry.sha256.get(ext), ext)
        files[dest.name] = {"sha256": digest, "size": size, "url": url, "pinned": ext in entry.sha256}
        self._write_manifest(entry.name, files)

    def _get(self, entry: RegistryEntry, url: str, dest: Path, pin: str | None, ext: str) -> tuple[str, int]:
        """URL -> dest through dest.part (resumed where an earlier attempt stopped): (sha256, size)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        attempt = 0
        while True:
            attempt += 1
            try:
                self._transfer(entry.name, url, part)
                break
            except _Retryable as exc:
                kept = part.stat().st_size if part.exists() else 0
                if attempt > self.retries:
                    resume = f"; {kept} bytes are kept in {part} and the next try resumes there" if kept else ""
                    raise ModelFetchError(
                        f"{entry.name}: downloading {url} failed after {attempt} attempt(s): {exc}{resume}"
                    ) from None
                self.say(f"{entry.name}: {exc}; retrying ({attempt}/{self.retries})")
                time.sleep(min(0.25 * attempt, 2.0))
        digest, size = sha256_file(part), part.stat().st_size
        wrong_hash = bool(pin) and digest != str(pin).lower()
        problem = f"has sha256 {digest}, but the registry pins {pin}" if wrong_hash else _content_problem(part, ext)
        if problem:
            part.unlink()
            _etag_file(part).unlink(missing_ok=True)
            error = ChecksumError if wrong_hash else ModelFetchError
            raise error(f"{entry.name}: {url} {problem}; the download was deleted")
        os.replace(part, dest)
        _etag_file(part).unlink(missing_ok=True)
        return digest, size

    def _transfer(self, name: str, url: str, part: Path) -> None:
        """One HTTP attempt: append to `part` from where it ends (Range + If-Range), or start over."""
        offset = part.stat().st_size if part.exists() else 0
        etag_file = _etag_file(part)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if etag_file.is_file():
                headers["If-Range"] = etag_file.read_text().strip()
        host = urllib.parse.urlsplit(url).netloc or url
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise _NotFound(url) from None
            if exc.code == 416 and offset:
                part.unlink()
                raise _Retryable(f"the server refused to resume at byte {offset} (HTTP 416); starting over") from None
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Retryable(f"HTTP {exc.code} {exc.reason} from {host}") from None
            raise ModelFetchError(f"{name}: {url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):  # a file:// mirror
                raise _NotFound(url) from None
            raise _Retryable(f"cannot reach {host}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets before the headers
            raise _Retryable(f"cannot reach {host}: {exc}") from None
        with response:
            status = getattr(response, "status", None) or 200
            if offset and status == 206:
                start = _content_range_start(response.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink()
                    raise _Retryable(f"asked for bytes from {offset}, the server sent from {start}; starting over")
                mode = "ab"
                self.say(f"resuming {url} at byte {offset}")
            else:
                offset, mode = 0, "wb"
                validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
                if validator:
                    etag_file.write_text(validator)
                else:
                    etag_file.unlink(missing_ok=True)
                length = response.headers.get("Content-Length")
                size = f" ({_size(int(length))})" if length and length.isdigit() else ""
                self.say(f"downloading {url}{size} into {part.parent}")
            length = response.headers.get("Content-Length")
            expected = offset + int(length) if length and length.isdigit() else None
            with open(part, mode) as f:
                try:
                    while block := response.read(CHUNK):
                        f.write(block)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retryable(f"connection lost after {f.tell()} bytes of {url}: {exc!r}") from None
                received = f.tell()
            if expected is not None and received < expected:
                raise _Retryable(f"the connection closed after {received} of {expected} bytes of {url}")

    def _convert(self, entry: RegistryEntry, files: dict[str, dict]) -> None:
        """NAME.pb (+ its JSON) -> NAME.onnx and its JSON, in a subprocess, then recorded."""
        name = entry.name
        graph = self.models_dir / f"{name}.pb"
        if not conversion_available():
            raise ConversionNeededError(
                f"{name}: Essentia publishes this model as a TensorFlow graph only ({self.url(entry, 'pb')}); "
                f"it is downloaded to {graph}. Convert it once with the convert extra: "
                f"pip install 'mirfeat[convert]' && python -m conversion convert {graph} "
                f"(then load {name} again)"
                + (f"; or use a model published as ONNX: {entry.note}" if entry.note else "")
            )
        work = self.models_dir / f".{name}.converting"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.say(f"{name}: converting {graph.name} to ONNX (python -m conversion convert)")
        command = [sys.executable, "-m", "conversion", "convert", str(graph), "-o", str(work / f"{name}.onnx")]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=self.convert_timeout,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )
            if proc.returncode != 0 or not (work / f"{name}.onnx").is_file():
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                raise ModelFetchError(f"{name}: converting {graph} failed ({' '.join(command)}):\n{tail}")
            for produced in sorted(work.iterdir()):
                target = self.models_dir / produced.name
                os.replace(produced, target)
                files[target.name] = {
                    "sha256": sha256_file(target),
                    "size": target.stat().st_size,
                    "converted_from": graph.name,
                }
            self._write_manifest(name, files)
        except subprocess.TimeoutExpired:
            raise ModelFetchError(f"{name}: converting {graph} took over {self.convert_timeout:.0f} s") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- manifests, checks, locks ---------------------------------------------------------------

    def _manifest_path(self, name: str) -> Path:
        return self.home / "manifests" / f"{name}.json"

    def _manifest(self, name: str) -> dict[str, dict]:
        path = self._manifest_path(name)
        try:
            files = json.loads(path.read_text()).get("files", {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelFetchError(f"{name}: cannot read the cache's record {path}: {exc}; delete it") from None
        return files if isinstance(files, dict) else {}

    def _write_manifest(self, name: str, files: Mapping[str, dict]) -> None:
        path = self._manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"name": name, "files": dict(files)}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def _check_file(self, name: str, entry: RegistryEntry | None, path: Path, record: dict) -> str | None:
        digest = sha256_file(path)
        source = record.get("url") or f"converted from {record.get('converted_from')}"
        pin = entry.sha256.get(path.suffix.lstrip(".")) if entry and record.get("url") else None
        if pin and digest != pin.lower():
            return f"{name}: {path} has sha256 {digest}, but the registry pins {pin} (from {source})"
        if digest != record.get("sha256"):
            return (
                f"{name}: {path} has changed since it was stored (sha256 {record.get('sha256')} recorded, "
                f"{digest} now; {source})"
            )
        return None

    def _verified_files(self, entry: RegistryEntry) -> dict[str, dict]:
        """The manifest's files that are present, each checked against its recorded sha256 and pin;
        a changed file is a ChecksumError (it is not replaced behind the user's back)."""
        files = self._manifest(entry.name)
        present = {}
        for file, record in files.items():
            path = self.models_dir / file
            if not path.is_file():
                continue
            problem = self._check_file(entry.name, entry, path, record)
            if problem:
                raise ChecksumError(
                    f"{problem}. Delete it, or download the model again: mirfeat models get {entry.name} --force"
                )
            present[file] = record
        return present

    def _remove(self, name: str) -> None:
        files = set(self._manifest(name)) | {f"{name}.{ext}" for ext in ("onnx", "json", "pb")}
        for file in files:
            for path in (self.models_dir / file, self.models_dir / f"{file}.part"):
                path.unlink(missing_ok=True)
                _etag_file(path).unlink(missing_ok=True)
        self._manifest_path(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Hold locks/NAME.lock: an OS lock on the open file (fcntl.flock, msvcrt.locking on Windows),
        released by the OS if the holder dies, so no stale lock outlives a killed process."""
        path = self.home / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            waiting = False
            while not try_lock(fd):
                if time.monotonic() >= deadline:
                    raise ModelFetchError(
                        f"{name}: another process has held {path} for over {self.lock_timeout:.0f} s "
                        "(still downloading?); try again later"
                    )
                if not waiting:
                    self.say(f"{name}: waiting for another process fetching it ({path})")
                    waiting = True
                time.sleep(0.05)
            try:
                yield
            finally:
                unlock(fd)
        finally:
            os.close(fd)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _etag_file(part: Path) -> Path:
    return part.with_name(part.name + ".etag")


def _content_range_start(value: str) -> int | None:
    """The first byte of a `Content-Range: bytes START-END/TOTAL` header."""
    unit, _, spec = value.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit.strip() == "bytes" and start.isdigit() else None


def _content_problem(path: Path, ext: str) -> str | None:
    """What makes a downloaded file plainly not what it should be (an HTML error page answering 200)."""
    if ext == "json":
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            return "is not JSON (an error page from a proxy or mirror?)"
        return None if isinstance(doc, dict) else "is not a JSON object"
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if not head:
        return "is empty"
    if head[:1] == b"<":
        return "is an HTML/XML page, not a model (an error page from a proxy or mirror?)"
    if ext == "onnx":
        # A body cut short where the server sent no length arrives as if whole: onnxruntime's
        # parser is what tells (once per download; the model loads from the cache afterwards).
        import onnxruntime as ort

        try:
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types vary by version
            message = str(exc).strip()
            reason = message.splitlines()[0][:200] if message else type(exc).__name__
            return f"is not a loadable ONNX model (cut short?): {reason}"
    return None


def fetch(name: str, **options) -> Path:
    """`ModelCache(**options).fetch(name)`: the verified .onnx of a registry model."""
    return ModelCache(**options).fetch(name)


def resolve(name: str) -> Path | None:
    """For `load_model`: the .onnx of a registry name, fetched on first use (environment settings);
    None for a name the registry does not have."""
    if name not in MODELS:
        return None
    return ModelCache().fetch(name)
