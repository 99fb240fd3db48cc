"""Opening byte streams from the URLs registries and mirrors name.

Supported: ``https://`` (and ``http://`` for hosts in ``ZOO_ALLOW_HTTP``), ``hf://org/repo/file@rev``
(resolved by huggingface_hub against ``ZOO_HF_ENDPOINT``, with its token handling), ``file:///path``
and fsspec URLs whose scheme is in ``ZOO_FSSPEC_SCHEMES``. Every stream can start at an offset,
so an interrupted download resumes (HTTP Range with If-Range on the ETag).
"""

from __future__ import annotations

import functools
import io
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import urllib.request

from zoo.config import Settings
from zoo.errors import DownloadError

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
_USER_AGENT = "sparkzoo"


class SourceFailure(Exception):
    """One source failed; ``transient`` failures are retried on the same source."""

    def __init__(self, reason: str, *, transient: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it did


@dataclass
class Stream:
    """An open body: ``offset`` is where it starts in the resource, ``total`` the resource's size."""

    body: BinaryIO
    offset: int
    total: int | None
    validator: str | None

    READ_STEP = 64 << 10  # http.client's read1 allocates this much per call: below malloc's mmap threshold

    def readinto(self, buf: memoryview) -> int:
        """Read what one call of the body gives (at most ``READ_STEP`` bytes); 0 at the end."""
        buf = buf[: self.READ_STEP]
        readinto = getattr(self.body, "readinto1", None) or getattr(self.body, "readinto", None)
        if readinto is not None:
            return readinto(buf) or 0
        data = self.body.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def fill(self, buf: memoryview, linger: float = 0.05) -> tuple[int, BaseException | None]:
        """Read into ``buf`` until it is full, the body ends, an error, or ``linger`` seconds pass:
        (bytes read, the error that stopped it or None).

        Reads in the body's own steps, so a stall or reset half-way through a buffer loses nothing
        that already arrived (the caller writes those bytes, then reports the error), and a slow
        body is handed over at least every ``linger`` seconds, so what a killed process leaves on
        disk is nearly everything it had received."""
        import http.client

        n = 0
        deadline = time.monotonic() + linger
        while n < len(buf):
            try:
                got = self.readinto(buf[n:])
            except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, closed socket
                return n, exc
            if not got:
                break
            n += got
            if time.monotonic() >= deadline:
                break
        return n, None

    def close(self) -> None:
        self.body.close()


def describe(url: str) -> str:
    """A URL safe to print: no user info or query string (they may carry credentials)."""
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return f"{p.scheme}://{host}{p.path}" if p.scheme else url


def plugin_openers(settings: Settings) -> dict[str, Any]:
    """{scheme: opener} from plugins' ``zoo_register_sources`` hook (first plugin wins a scheme)."""
    from zoo.plugins import manager

    found: dict[str, Any] = {}
    for _, openers in manager.call_each("zoo_register_sources", settings):
        for scheme, opener in (openers or {}).items():
            found.setdefault(scheme, opener)
    return found


def check_allowed(url: str, settings: Settings) -> None:
    """Refuse schemes and hosts the configuration does not allow (a permanent failure)."""
    p = urlsplit(url)
    if p.scheme in ("https", "file", "hf"):
        return
    if p.scheme == "http":
        if settings.http_allowed(p.hostname or ""):
            return
        raise SourceFailure(
            f"plain http to {p.hostname} is not allowed; use https, or list the host in ZOO_ALLOW_HTTP "
            "if it is a trusted internal mirror",
            transient=False,
        )
    if p.scheme in settings.fsspec_schemes or p.scheme in plugin_openers(settings):
        return
    raise SourceFailure(
        f"unsupported URL scheme {p.scheme!r}; use https://, hf://, file:// or an fsspec scheme listed in "
        "ZOO_FSSPEC_SCHEMES",
        transient=False,
    )


def parse_hf(url: str) -> tuple[str, str, str]:
    """``hf://org/repo/path/file@rev`` -> (repo id, file path in the repo, revision; ``main`` by default)."""
    p = urlsplit(url)
    path, _, revision = f"{p.netloc}{p.path}".partition("@")
    parts = path.split("/")
    if len(parts) < 3 or not all(parts):
        raise SourceFailure(f"malformed hf:// URL {url!r}; expected hf://org/repo/file[@revision]", transient=False)
    return "/".join(parts[:2]), "/".join(parts[2:]), revision or "main"


def hf_to_https(url: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """``hf://org/repo/path/file@rev`` -> the resolve URL on the hub, plus huggingface_hub's headers."""
    from huggingface_hub import get_token, hf_hub_url

    repo_id, filename, revision = parse_hf(url)
    target = hf_hub_url(repo_id, filename, revision=revision, endpoint=settings.hf_endpoint)
    # Not huggingface_hub's build_hf_headers: it fetches {HF_ENDPOINT}/api/agent-harnesses to describe
    # the caller, a request to huggingface.co whatever ZOO_HF_ENDPOINT says (air-gapped clusters, mirrors)
    headers = {"user-agent": _USER_AGENT}
    try:
        token = get_token()
    except Exception:  # a malformed saved token must not stop public downloads
        token = None
    if token:
        headers["authorization"] = f"Bearer {token}"
    return target, headers


_CREDENTIAL_HEADERS = ("Authorization", "Proxy-authorization", "Cookie")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what credentials are bound to."""
    p = urlsplit(url)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or "").lower(), p.port or _DEFAULT_PORTS.get(scheme)


def _strip_credentials(request: "urllib.request.Request") -> None:
    for name in _CREDENTIAL_HEADERS:
        request.remove_header(name)


def _redirect_handler(settings: Settings) -> "urllib.request.HTTPRedirectHandler":
    """urllib's redirect handling, but never from https to http, and never carrying credentials to
    another origin.

    ``ZOO_ALLOW_HTTP`` allows URLs *written* as http for listed hosts; it never lets an https URL be
    redirected to plain http (that is a downgrade an attacker on the path could force). Credentials
    stay with the exact origin (scheme, host, port) they were given for: https://hub and
    http://hub are different origins even on default ports."""
    import urllib.request

    class RedirectHandler(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib API
            old_scheme, new_scheme = urlsplit(req.full_url).scheme.lower(), urlsplit(newurl).scheme.lower()
            if old_scheme == "https" and new_scheme != "https":
                raise SourceFailure(
                    f"{describe(req.full_url)} redirected to {describe(newurl)}: a redirect from https to "
                    f"{new_scheme or 'another scheme'} is refused whatever ZOO_ALLOW_HTTP says",
                    transient=False,
                )
            check_allowed(newurl, settings)
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and origin(newurl) != origin(req.full_url):
                _strip_credentials(new)
            return new

    return RedirectHandler()


@functools.lru_cache(maxsize=8)
def _opener(settings: Settings) -> "urllib.request.OpenerDirector":
    import urllib.request

    return urllib.request.build_opener(_redirect_handler(settings))


def _open_http(url: str, settings: Settings, offset: int, validator: str | None, headers: dict[str, str]) -> Stream:
    import urllib.error
    import urllib.request

    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **headers}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    if urlsplit(url).scheme.lower() != "https":
        _strip_credentials(request)  # a token never travels in clear text, even to an allowed http mirror
    try:
        response = _opener(settings).open(request, timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", ""))
            exc.close()
            if match and int(match.group(1)) == offset:  # we already have every byte
                return Stream(io.BytesIO(b""), offset, offset, validator)
            raise SourceFailure("HTTP 416: the partial download does not fit the resource", transient=True) from None
        retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.code in (429, 503) else None
        exc.close()
        transient = exc.code >= 500 or exc.code in (408, 425, 429)
        wait = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        raise SourceFailure(f"HTTP {exc.code} {exc.reason}{wait}", transient=transient, retry_after=retry_after) from None
    except SourceFailure:
        raise
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise SourceFailure(f"timed out after {settings.timeout:g} s", transient=True) from None
        if unresolved(reason):  # no network or no DNS: asking again in a second will not change that
            raise SourceFailure(f"{UNRESOLVED} {urlsplit(url).hostname}: {reason}", transient=False) from None
        raise SourceFailure(f"connection failed: {reason}", transient=True) from None

    etag = response.headers.get("ETag")
    new_validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            response.close()
            raise SourceFailure("server answered a Range request with the wrong range", transient=True)
        total = int(match.group(3)) if match.group(3) != "*" else None
        return Stream(response, offset, total, new_validator)
    length = response.headers.get("Content-Length")
    return Stream(response, 0, int(length) if length and length.isdigit() else None, new_validator)


def _open_file(url: str, offset: int) -> Stream:
    path = unquote(urlsplit(url).path)
    if os.name == "nt" and re.match(r"^/[A-Za-z]:", path):
        path = path[1:]
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise SourceFailure(f"no such file {path}", transient=False) from None
    except OSError as exc:
        raise SourceFailure(f"cannot open {path}: {exc.strerror}", transient=True) from None
    st = os.fstat(fh.fileno())
    fh.seek(min(offset, st.st_size))
    return Stream(fh, min(offset, st.st_size), st.st_size, f"{st.st_mtime_ns}-{st.st_size}")


def _open_fsspec(url: str, offset: int) -> Stream:
    try:
        import fsspec
    except ImportError:
        raise SourceFailure(
            f"{urlsplit(url).scheme}:// sources need fsspec and its backend: pip install 'sparkzoo[fsspec]' "
            "plus s3fs / gcsfs / adlfs as needed",
            transient=False,
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
        info: dict[str, Any] = fs.info(path)
        fh = fs.open(path, "rb")
        fh.seek(offset)
    except FileNotFoundError:
        raise SourceFailure(f"no such object {describe(url)}", transient=False) from None
    except ImportError as exc:
        raise SourceFailure(f"fsspec backend missing for {describe(url)}: {exc}", transient=False) from None
    except Exception as exc:  # backends raise their own network errors
        raise SourceFailure(f"{type(exc).__name__}: {exc}", transient=True) from None
    validator = info.get("ETag") or info.get("etag")
    return Stream(fh, offset, info.get("size"), str(validator) if validator else None)


def open_stream(url: str, settings: Settings, offset: int = 0, validator: str | None = None) -> Stream:
    """Open ``url`` at ``offset`` (the stream's own ``offset`` says where it really starts)."""
    check_allowed(url, settings)
    scheme = urlsplit(url).scheme
    if scheme == "hf":
        target, headers = hf_to_https(url, settings)
        check_allowed(target, settings)
        return _open_http(target, settings, offset, validator, headers)
    if scheme in ("http", "https"):
        return _open_http(url, settings, offset, validator, {})
    if scheme == "file":
        return _open_file(url, offset)
    opener = plugin_openers(settings).get(scheme)
    if opener is not None:
        return opener(url, settings, offset, validator)
    return _open_fsspec(url, offset)


RETRY_AFTER_CAP = 60.0


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    import email.utils

    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0) if when is not None else None


def backoff_delay(settings: Settings, attempt: int, failure: SourceFailure | None = None) -> float:
    """Seconds to wait before retry ``attempt + 1``.

    A server's Retry-After (on 429/503) is honoured, but never beyond ``ZOO_TIMEOUT`` nor
    ``RETRY_AFTER_CAP``: a server cannot park a pull longer than the user's timeout allows.
    Otherwise: exponential from ZOO_BACKOFF, capped at 30 s."""
    if failure is not None and failure.retry_after is not None:
        return min(failure.retry_after, settings.timeout, RETRY_AFTER_CAP)
    return min(settings.backoff * (2**attempt), 30.0)


#: how a failure to resolve a host name begins (download errors add the offline hint after it)
UNRESOLVED = "cannot resolve host"
OFFLINE_HINT = ("No network here? Set ZOO_OFFLINE=1 to use only the cache (and ZOO_MIRRORS, e.g. a file:// "
                "mirror made with `zoo mirror`), or check DNS and proxy settings (HTTPS_PROXY).")


def unresolved(reason: object) -> bool:
    """Whether a connection failed because the host name does not resolve (no network, no DNS)."""
    if isinstance(reason, socket.gaierror):
        return True
    text = str(reason)
    return any(words in text for words in ("Name or service not known", "Temporary failure in name resolution",
                                           "nodename nor servname", "No address associated with hostname",
                                           "getaddrinfo failed", "NameResolutionError"))


def read_all(url: str, settings: Settings, limit: int = 64 << 20) -> bytes:
    """Fetch a small document (a registry) whole, retrying transient failures."""
    last: SourceFailure | None = None
    for attempt in range(settings.retries + 1):
        try:
            stream = open_stream(url, settings)
            try:
                data = stream.body.read(limit + 1)
            finally:
                stream.close()
            if len(data) > limit:
                raise SourceFailure(f"larger than {limit} bytes", transient=False)
            return data
        except SourceFailure as exc:
            last = exc
        except OSError as exc:
            last = SourceFailure(f"connection failed: {exc}", transient=not unresolved(exc))
        if not last.transient or attempt == settings.retries:
            break
        time.sleep(backoff_delay(settings, attempt, last))
    reason = last.reason if last else "unknown error"
    hint = f" {OFFLINE_HINT}" if reason.startswith(UNRESOLVED) else ""
    raise DownloadError(f"cannot fetch {describe(url)}: {reason}.{hint}")


def probe(base: str, settings: Settings) -> tuple[bool, str]:
    """Whether a mirror or endpoint answers at all (any HTTP status counts as an answer)."""
    try:
        check_allowed(base, settings)
    except SourceFailure as exc:
        return False, exc.reason
    scheme = urlsplit(base).scheme
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(base.rstrip("/") + "/", method="HEAD", headers={"User-Agent": _USER_AGENT})
        try:
            with _opener(settings).open(request, timeout=min(settings.timeout, 10.0)) as response:
                return True, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return True, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if unresolved(reason):
                return False, f"{UNRESOLVED} {urlsplit(base).hostname} ({reason}). {OFFLINE_HINT}"
            return False, f"{reason}; check the network, the proxy (HTTPS_PROXY) or the URL"
    if scheme == "file":
        path = unquote(urlsplit(base).path)
        return (os.path.isdir(path), "directory exists" if os.path.isdir(path) else f"no directory {path}")
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(base)
        return (bool(fs.exists(path)), "exists" if fs.exists(path) else "not found")
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
