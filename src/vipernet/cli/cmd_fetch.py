"""``vipernet fetch``: a curl-like HTTP/1.1 client over vipernet (netd by default).

    vipernet fetch http://10.0.2.2/file -o out          # body to a file, progress on a TTY
    vipernet fetch -L -i https://example.test/           # follow redirects, show the head
    vipernet fetch -X PUT -H 'Content-Type: text/plain' -d @notes.txt http://h/notes
    vipernet fetch -v URL URL                             # keep-alive: 1 opened, 1 reused

Connections go through netd unless ``VIPERNET_TRANSPORT=os``.  A download to ``-o FILE``
is written to ``FILE.part`` and renamed only once the whole body has arrived, so a partial
download never looks like a finished one: it keeps the ``.part`` name, says so on stderr
and exits non-zero.  Every failure is one line on stderr: what happened, and where it
helps what to do (start netd, --cacert / -k for a refused certificate).

Exit codes (curl's numbers, so scripts can rely on them):
 0 success; 2 usage; 3 bad URL; 6 cannot resolve host; 7 cannot connect; 8 malformed
 response; 18 partial body; 22 HTTP status >= 400 with --fail; 23 cannot write output;
 26 cannot read the upload; 28 timeout; 35 TLS failure; 47 too many redirects; 52 empty
 reply; 56 connection failed while receiving (also a broken chunked body, as curl);
 60 server certificate refused; 63 body over --max-filesize.

With -i (and -I) each 1xx interim head the server sent (100 Continue, 103 Early Hints)
is written before the final head, as curl -i does; -v shows them too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: vipernet.http brings TLS and certifi (see main.py)
    from vipernet.http import URL, Client, HTTPError, InterimResponse, Response

EXIT_OK = 0
EXIT_URL = 3
EXIT_RESOLVE = 6
EXIT_CONNECT = 7
EXIT_WEIRD_REPLY = 8
EXIT_PARTIAL = 18
EXIT_HTTP_ERROR = 22
EXIT_WRITE = 23
EXIT_READ = 26
EXIT_TIMEOUT = 28
EXIT_TLS = 35
EXIT_REDIRECTS = 47
EXIT_EMPTY_REPLY = 52
EXIT_RECV = 56
EXIT_CERT = 60
EXIT_FILESIZE = 63


def register(sub: Any) -> None:
    p = sub.add_parser("fetch", help="fetch URLs over HTTP/1.1 or HTTPS (curl-like)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                   help="write the body of the n-th URL to FILE ('-' is stdout); repeatable")
    p.add_argument("-X", "--request", dest="method", metavar="METHOD",
                   help="request method (default GET, or POST with -d, PUT with -T)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'K: V'",
                   help="extra request header; repeatable")
    p.add_argument("-d", "--data", action="append", default=[], metavar="DATA",
                   help="request body ('@FILE' reads a file, '@-' stdin); repeats join with &")
    p.add_argument("-T", "--upload-file", metavar="FILE", help="PUT the file as the body")
    p.add_argument("-L", "--location", action="store_true", help="follow redirects")
    p.add_argument("--max-redirs", type=int, default=20, metavar="N")
    p.add_argument("-k", "--insecure", action="store_true",
                   help="do not verify the server certificate (https)")
    p.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE")
    p.add_argument("-i", "--include", action="store_true",
                   help="write the response head before the body")
    p.add_argument("-I", "--head", action="store_true", help="send HEAD; print the head")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
                   help="connect to ADDR for HOST:PORT (Host and SNI stay HOST)")
    p.add_argument("-f", "--fail", action="store_true",
                   help="exit 22 (and write no body) on an HTTP status >= 400")
    p.add_argument("-s", "--silent", action="store_true", help="no progress bar or messages")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show request/response heads and connection counters on stderr")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                   help="longest wait for the next bytes from the server")
    p.add_argument("-m", "--max-time", type=float, default=None, metavar="S",
                   help="limit for each whole transfer")
    p.add_argument("--max-filesize", type=int, default=None, metavar="BYTES")
    p.add_argument("--progress", dest="progress", action="store_const", const=True,
                   default=None, help="force the progress bar on")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.set_defaults(func=run)


class _Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse_resolve(items: list[str]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for item in items:
        host, sep1, rest = item.partition(":")
        port, sep2, addr = rest.partition(":")
        if not (sep1 and sep2 and host and port.isdigit() and addr):
            raise _Failure(2, f"--resolve wants HOST:PORT:ADDR, not {item!r}")
        out[(host.lower(), int(port))] = addr.strip("[]")
    return out


def _parse_headers(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise _Failure(2, f"-H wants 'Name: value', not {item!r}")
        out.append((name.strip(), value.strip()))
    return out


def _request_body(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    if args.upload_file:
        try:
            return stack.enter_context(open(args.upload_file, "rb"))
        except OSError as exc:
            raise _Failure(EXIT_READ, f"cannot read {args.upload_file}: {exc}") from None
    if not args.data:
        return None
    if len(args.data) == 1 and args.data[0].startswith("@"):
        name = args.data[0][1:]
        if name == "-":
            return sys.stdin.buffer
        try:
            return stack.enter_context(open(name, "rb"))
        except OSError as exc:
            raise _Failure(EXIT_READ, f"cannot read {name}: {exc}") from None
    parts = []
    for item in args.data:
        if item.startswith("@"):
            try:
                parts.append(Path(item[1:]).read_bytes().replace(b"\r", b"").replace(b"\n", b""))
            except OSError as exc:
                raise _Failure(EXIT_READ, f"cannot read {item[1:]}: {exc}") from None
        else:
            parts.append(item.encode("utf-8"))
    return b"&".join(parts)


def _format_head(response: Response | InterimResponse) -> bytes:
    lines = [f"HTTP/{response.http_version} {response.status} {response.reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _heads(response: Response) -> list[Response | InterimResponse]:
    """Every 1xx head the server sent, then the final one: what curl -i and -v show."""
    return [*response.informational, response]


def _format_heads(response: Response) -> bytes:
    return b"".join(_format_head(head) for head in _heads(response))


class _Output:
    """Where one body goes: stdout, or FILE via FILE.part renamed on success."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.part: Path | None = None
        self.stream: IO[bytes]
        if name is None or name == "-":
            self.stream = sys.stdout.buffer
            self.is_tty = sys.stdout.isatty()
            return
        self.is_tty = False
        target = Path(name)
        try:
            if target.exists() and not target.is_file():
                self.stream = target.open("wb")  # /dev/null, a FIFO: write in place
            else:
                self.part = target.with_name(target.name + ".part")
                self.stream = self.part.open("wb")
        except OSError as exc:
            raise _Failure(EXIT_WRITE, f"cannot write {name}: {exc}") from None

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.stream.write(data)
        except OSError as exc:
            raise _Failure(EXIT_WRITE, f"cannot write {self.name or 'stdout'}: {exc}") from None

    def finish(self, ok: bool) -> str | None:
        """Close; on success rename FILE.part to FILE.  Returns where partial data is."""
        try:
            if self.stream is sys.stdout.buffer:
                self.stream.flush()
                return None
            self.stream.close()
        except OSError as exc:
            raise _Failure(EXIT_WRITE, f"cannot write {self.name}: {exc}") from None
        if self.part is None or self.name is None:
            return None
        if ok:
            os.replace(self.part, self.name)
            return None
        return str(self.part)


@contextlib.contextmanager
def _progress(enabled: bool, label: str, total: int | None) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _error_code(exc: HTTPError) -> int:
    from vipernet.http import (
        ConnectError,
        ConnectionClosed,
        IncompleteBody,
        InvalidRequest,
        InvalidURL,
        MalformedChunk,
        ProtocolError,
        ResolveError,
        ResponseTooLarge,
        Timeout,
        TLSError,
        TooManyRedirects,
    )

    if isinstance(exc, InvalidURL):
        return EXIT_URL
    if isinstance(exc, InvalidRequest):
        return 2
    if isinstance(exc, ResolveError):
        return EXIT_RESOLVE
    if isinstance(exc, ConnectError):
        return EXIT_CONNECT
    if isinstance(exc, TLSError):
        return EXIT_CERT if exc.certificate else EXIT_TLS
    if isinstance(exc, Timeout):
        return EXIT_TIMEOUT
    if isinstance(exc, IncompleteBody):
        return EXIT_PARTIAL
    if isinstance(exc, MalformedChunk):
        return EXIT_RECV  # curl: "(56) Illegal or missing hexadecimal sequence in chunked..."
    if isinstance(exc, ConnectionClosed):
        return EXIT_EMPTY_REPLY if "without a response" in str(exc) else EXIT_RECV
    if isinstance(exc, TooManyRedirects):
        return EXIT_REDIRECTS
    if isinstance(exc, ResponseTooLarge):
        return EXIT_FILESIZE
    if isinstance(exc, ProtocolError):
        return EXIT_WEIRD_REPLY
    return 1


def _describe(exc: HTTPError) -> str:
    """The error part of the one stderr line: no Python ``[Errno N]`` tags, netd's loss or
    absence said as such (with what to do), and how to get past a refused certificate."""
    from vipernet.cli.netd_common import plain
    from vipernet.http import TLSError

    text = plain(str(exc))
    start = text.find("netd is not running")
    if start > 0:
        text = text[start:]  # "cannot connect to HOST:PORT: " adds nothing to it
    if isinstance(exc, TLSError) and exc.certificate:
        text += " (--cacert FILE trusts the server's CA; -k skips the check)"
    return text


def _fetch_one(client: Client, args: argparse.Namespace, url: str, output: str | None,
               say: Any) -> int:
    from vipernet.http import URL, HTTPError

    method = args.method or ("HEAD" if args.head else
                             "PUT" if args.upload_file else "POST" if args.data else "GET")
    headers = _parse_headers(args.header)
    if args.data and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    with contextlib.ExitStack() as stack:
        body = _request_body(args, stack)
        response = stack.enter_context(client.stream(method, url, headers=headers, body=body))
        if args.fail and response.status >= 400:
            say(f"vipernet fetch: {url}: HTTP {response.status} {response.reason}")
            return EXIT_HTTP_ERROR
        out = _Output(output)
        ok = False
        received = 0
        try:
            if args.include or args.head:
                out.write(_format_heads(response))
            show = args.progress if args.progress is not None else (
                not args.silent and sys.stderr.isatty() and not out.is_tty)
            label = URL.parse(url).target.rsplit("/", 1)[-1] or url
            with _progress(bool(show), label, response.expected_length) as advance:

                def wrote(n: int) -> None:
                    nonlocal received
                    received += n
                    if advance is not None:
                        advance(n)

                # readinto one reusable buffer, written out as memoryview slices: for a
                # Content-Length body that is recv_into straight from the socket
                response.write_to(out, progress=wrote)
            ok = True
        except HTTPError as exc:
            where = out.finish(False)
            expected = response.expected_length
            of = f" of {expected}" if expected is not None else ""
            kept = f"; partial data left in {where}" if where else ""
            say(f"vipernet fetch: {url}: {_describe(exc)}; "
                f"partial download: {received}{of} bytes received{kept}")
            code = _error_code(exc)
            return code if code != 1 else EXIT_PARTIAL
        finally:
            if ok:
                out.finish(True)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from vipernet.http import Client, HTTPError, Timeouts

    def say(message: str) -> None:
        if not args.silent or not message.startswith("*"):
            print(message, file=sys.stderr, flush=True)

    def on_request(method: str, url: URL, fields: tuple[tuple[str, str], ...],
                   reused: bool) -> None:
        how = "reusing" if reused else "opened"
        say(f"* {how} connection to {url.host}:{url.port} ({url.scheme})")
        say(f"> {method} {url.target} HTTP/1.1")
        for k, v in fields:
            say(f"> {k}: {v}")
        say(">")

    def on_response(response: Response) -> None:
        for head in _heads(response):
            say(f"< HTTP/{head.http_version} {head.status} {head.reason}")
            for k, v in head.headers:
                say(f"< {k}: {v}")
            say("<")

    try:
        if len(args.output) > len(args.urls):
            raise _Failure(2, "more -o options than URLs")
        resolve = _parse_resolve(args.resolve)
        client = Client(
            timeouts=Timeouts(connect=args.connect_timeout, read=args.read_timeout,
                              total=args.max_time),
            follow_redirects=args.location, max_redirects=args.max_redirs,
            cafile=args.cacert, insecure=args.insecure, resolve=resolve,
            max_body_size=args.max_filesize,
            on_request=on_request if args.verbose else None,
            on_response=on_response if args.verbose else None)
        status = EXIT_OK
        with client:
            for index, url in enumerate(args.urls):
                output = args.output[index] if index < len(args.output) else None
                try:
                    status = _fetch_one(client, args, url, output, say)
                except HTTPError as exc:
                    say(f"vipernet fetch: {url}: {_describe(exc)}")
                    status = _error_code(exc)
                if status != EXIT_OK:
                    break
            if args.verbose:
                st = client.stats
                say(f"* connections opened {st.connections_opened}, reused "
                    f"{st.connections_reused}; requests {st.requests}, redirects "
                    f"{st.redirects}, retries {st.retries}")
        return status
    except _Failure as exc:
        say(f"vipernet fetch: {exc}")
        return exc.code
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stderr.close()
        return EXIT_WRITE
