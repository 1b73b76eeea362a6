"""Issue 16 section 2 (HTTP), sans-IO: broken chunked framing is a typed error whose text
shows the peer's bytes readably (not a Python repr), and 1xx interim heads are kept on the
response for ``fetch -i`` instead of being dropped."""

from __future__ import annotations

import pytest

from tests.http.scripted import MemorySocket
from vipernet.http import Client, Headers, InterimResponse, MalformedChunk, ProtocolError
from vipernet.http.connection import HTTPConnection, chunk_error, readable_h11_error
from vipernet.http.errors import quote_bytes

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def read_all(pieces: list[bytes]) -> tuple[HTTPConnection, bytes]:
    conn = HTTPConnection(MemorySocket(pieces), origin=("http", "h", 80))
    conn.begin(read_timeout=1.0, deadline=None, total=None)
    conn.send_request("GET", "/", (("Host", "h"),), None)
    conn.receive_head()
    body = bytearray()
    while (chunk := conn.read_body()) is not None:
        body += chunk
    return conn, bytes(body)


@pytest.mark.parametrize(("data", "text"), [
    (b"zz", '"zz"'),
    (b"", '""'),
    (b'say "hi"\\', '"say \\"hi\\"\\\\"'),
    (b"\r\n\t\x00\x1b[31m\xff", '"\\r\\n\\t\\x00\\x1b[31m\\xff"'),
    (b"a" * 70, '"' + "a" * 64 + '"... (70 bytes)'),
])
def test_quote_bytes_is_printable_and_escaped(data: bytes, text: str) -> None:
    assert quote_bytes(data) == text
    assert quote_bytes(data).isprintable()


@pytest.mark.parametrize(("line", "message"), [
    (b"zz\r\n", 'illegal chunk header "zz"'),
    (b"5 x\x00\r\n", 'illegal chunk header "5 x\\x00"'),
    (b"it's\r\n", 'illegal chunk header "it\'s"'),  # repr switches to double quotes
    (b"-1\r\n", 'illegal chunk header "-1"'),
])
def test_a_bad_chunk_header_is_a_malformed_chunk_naming_the_bytes(line: bytes,
                                                                 message: str) -> None:
    with pytest.raises(MalformedChunk) as caught:
        read_all([CHUNKED + b"3\r\nabc\r\n" + line + b"more"])
    assert str(caught.value) == message
    assert caught.value.data == line.removesuffix(b"\r\n")
    assert "bytearray" not in str(caught.value)
    assert isinstance(caught.value, ProtocolError)  # still a protocol error for callers


def test_a_bad_chunk_header_split_byte_by_byte_is_the_same_error() -> None:
    raw = CHUNKED + b"zz\r\n"
    with pytest.raises(MalformedChunk, match=r'^illegal chunk header "zz"$'):
        read_all([raw[i:i + 1] for i in range(len(raw))] + [b"tail"])


def test_chunk_data_without_its_crlf_is_a_malformed_chunk() -> None:
    with pytest.raises(MalformedChunk) as caught:
        read_all([CHUNKED + b"3\r\nabcXY0\r\n\r\n"])
    assert str(caught.value) == 'chunk data not followed by CRLF: got "XY"'


def test_an_endless_chunk_size_line_is_a_malformed_chunk_not_a_head_error() -> None:
    conn = HTTPConnection(MemorySocket([CHUNKED, b"1" * 70_000]), origin=("http", "h", 80),
                          max_header_bytes=1024)
    conn.begin(read_timeout=1.0, deadline=None, total=None)
    conn.send_request("GET", "/", (("Host", "h"),), None)
    conn.receive_head()
    with pytest.raises(MalformedChunk, match="longer than 1024 bytes"):
        while conn.read_body() is not None:
            pass


def test_h11_texts_for_other_errors_lose_their_reprs() -> None:
    assert readable_h11_error("illegal status line: bytearray(b'HTTP/9 \\x1b[0m')") == (
        'illegal status line: "HTTP/9 \\x1b[0m"')
    assert readable_h11_error('x: b"it\'s" and bytearray(b"")') == 'x: "it\'s" and ""'
    assert readable_h11_error("nothing to change") == "nothing to change"
    assert chunk_error("illegal status line: b'x'", 10) is None


def test_a_garbage_status_line_message_is_readable() -> None:
    with pytest.raises(ProtocolError) as caught:
        read_all([b"HTTP/1.1 2x0 \x1bOK\r\n\r\n"])
    assert "bytearray" not in str(caught.value) and "\\x1b" in str(caught.value)


def test_interim_heads_are_kept_in_order_on_the_response() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    sock = MemorySocket([raw])
    with Client(connect=lambda h, p, t: sock) as client:
        r = client.get("http://h/")
    assert (r.status, r.content) == (200, b"ok")
    assert r.informational == (
        InterimResponse(status=100, reason="Continue", http_version="1.1", headers=Headers()),
        InterimResponse(status=103, reason="Early Hints", http_version="1.1",
                        headers=Headers.of([("Link", "</style.css>; rel=preload")])),
    )


def test_interim_heads_of_one_exchange_do_not_leak_into_the_next() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
           b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
    sock = MemorySocket([raw])
    with Client(connect=lambda h, p, t: sock) as client:
        first, second = client.get("http://h/1"), client.get("http://h/2")
    assert [i.status for i in first.informational] == [100]
    assert second.informational == () and second.content == b"b"
    assert client.stats.connections_reused == 1
