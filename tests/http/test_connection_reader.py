"""The connection's reader over an in-memory socket: any split of the bytes, and fuzzing."""

from __future__ import annotations

import contextlib

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from tests.http.scripted import MemorySocket
from vipernet.http import Client, HTTPError
from vipernet.http.connection import HTTPConnection

RESPONSES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n", b"abcde"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil eof", b"until eof"),
]


def exchange(pieces: list[bytes]) -> tuple[int, bytes, HTTPConnection]:
    conn = HTTPConnection(MemorySocket(pieces), origin=("http", "h", 80))
    conn.begin(read_timeout=1.0, deadline=None, total=None)
    conn.send_request("GET", "/", (("Host", "h"),), None)
    head = conn.receive_head()
    body = bytearray()
    while (chunk := conn.read_body()) is not None:
        body += chunk
    return head.status_code, bytes(body), conn


@pytest.mark.parametrize(("raw", "body"), RESPONSES)
def test_response_parses_the_same_all_at_once_and_byte_by_byte(raw: bytes, body: bytes) -> None:
    whole = exchange([raw])
    split = exchange([raw[i:i + 1] for i in range(len(raw))])
    assert whole[:2] == split[:2] == (200, body)


def test_trailing_bytes_after_a_complete_response_are_not_part_of_the_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    status, body, conn = exchange([raw])
    assert (status, body) == (200, b"ok")
    assert conn.reusable  # the next response's bytes stay buffered for the next exchange


def test_request_line_and_head_go_out_in_one_write() -> None:
    sock = MemorySocket([b"HTTP/1.1 204 No Content\r\n\r\n"])
    with Client(connect=lambda h, p, t: sock) as client:
        client.post("http://h/x", body=b"tiny")
    assert sock.sent.startswith(b"POST /x HTTP/1.1\r\nHost: h\r\n")
    assert sock.sent.endswith(b"\r\n\r\ntiny")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=64))
def test_arbitrary_response_bytes_give_a_typed_error_or_a_response(raw: bytes,
                                                                   split: int) -> None:
    pieces = [raw[i:i + split] for i in range(0, len(raw), split)]
    with contextlib.suppress(HTTPError):
        exchange(pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n",
    b"\r\n", b"abc", b"3\r\n", b"0\r\n", b"HTTP/1.1 100 Continue\r\n", b"X: y\r\n",
    b"Content-Length: 4\r\n", b"ffffffffffffffffffff\r\n", b"\x00", b"HTTP/1.0 204 x\r\n",
]), max_size=12))
def test_plausible_fragments_in_any_order_never_crash(parts: list[bytes]) -> None:
    with contextlib.suppress(HTTPError):
        exchange(parts)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"200 OK", b"301 Moved", b"302 Found", b"307 T", b"100 Continue",
                        b"204 No Content", b"999 Odd", b"abc"]),
       st.lists(st.tuples(st.sampled_from([b"Location", b"Content-Length", b"Connection",
                                           b"Transfer-Encoding", b"X-Other"]),
                          st.binary(max_size=30)), max_size=4),
       st.binary(max_size=50))
def test_client_survives_arbitrary_heads_with_redirects_and_lengths(
        status: bytes, fields: list[tuple[bytes, bytes]], body: bytes) -> None:
    raw = b"HTTP/1.1 " + status + b"\r\n" + b"".join(k + b": " + v + b"\r\n"
                                                     for k, v in fields) + b"\r\n" + body
    with Client(connect=lambda h, p, t: MemorySocket([raw]), max_redirects=3) as client, \
            contextlib.suppress(HTTPError):
        client.post("http://h/start", body=b"x")
