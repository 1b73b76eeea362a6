"""NET_HOSTS / NET_SOCKET_CREATE_ON_HOST bodies: round trips, and malformed ones refused
with a typed error (netd answers EINVAL), never a crash."""

from __future__ import annotations

import pytest

from vipernet.netd import protocol as p
from vipernet.netd.vhosts import OP_ADD, OP_LIST, OP_REMOVE, CreateOnHostRequest, HostsRequest


@pytest.mark.parametrize("request_body", [
    HostsRequest(op=OP_LIST),
    HostsRequest(op=OP_ADD, first="10.0.3.1", count=1000, prefixlen=16),
    HostsRequest(op=OP_REMOVE, first="10.0.3.1", count=5),
])
def test_hosts_requests_round_trip(request_body: HostsRequest) -> None:
    assert HostsRequest.decode(request_body.encode()) == request_body


def test_create_on_host_round_trips() -> None:
    body = CreateOnHostRequest(kind=1, host="10.0.3.7")
    assert body.encode() == b"\x01\x0a\x00\x03\x07"
    assert CreateOnHostRequest.decode(body.encode()) == body


@pytest.mark.parametrize("raw", [
    b"", b"\x09", b"\x02\x0a\x00\x03", b"\x02\x0a\x00\x03\x01\x00\x00\x00\x00\x10",
    b"\x02\x0a\x00\x03\x01\x00\x02\x00\x01\x10", b"\x02\x0a\x00\x03\x01\x00\x00\x00\x05\x07",
    b"\x03\x0a\x00\x03\x01\x00\x00\x00\x05\x00", b"\x01\x00",
])
def test_malformed_hosts_requests_are_typed_errors(raw: bytes) -> None:
    with pytest.raises(p.MalformedMessage):
        HostsRequest.decode(raw)


@pytest.mark.parametrize("raw", [b"", b"\x01\x0a\x00\x03", b"\x01\x0a\x00\x03\x07\x00"])
def test_malformed_create_on_host_is_a_typed_error(raw: bytes) -> None:
    with pytest.raises(p.MalformedMessage):
        CreateOnHostRequest.decode(raw)
