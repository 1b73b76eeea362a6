"""Host ranges: COUNT@FIRST and FIRST-LAST, prefixes, and the MACs derived from IPs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from vipernet.vhosts import HostRangeError, mac_for, parse_host_range


def test_count_at_first_and_first_dash_last_name_the_same_range() -> None:
    a = parse_host_range("1000@10.0.2.100/16")
    b = parse_host_range("10.0.2.100-10.0.6.75/16")
    assert a == b and a.count == 1000 and str(a.last) == "10.0.6.75"
    interfaces = list(a.interfaces())
    assert interfaces[0] == IPv4Interface("10.0.2.100/16")
    assert interfaces[-1] == IPv4Interface("10.0.6.75/16")
    assert parse_host_range("3@10.0.2.10", default_prefixlen=24).prefixlen == 24


@pytest.mark.parametrize("text", [
    "0@10.0.2.1", "-5@10.0.2.1", "10.0.2.9-10.0.2.1", "300@10.0.2.100/24",
    "1@10.0.0.0/16", "x@10.0.2.1", "10@10.0.2.300", "10@10.0.2.1/40", "10.0.2.1",
    "10@10.0.2.1/abc", "2000000@10.0.0.1/8", "5@255.255.255.254/8",
])
def test_a_bad_range_is_a_typed_error(text: str) -> None:
    with pytest.raises(HostRangeError):
        parse_host_range(text)


def test_the_mac_is_locally_administered_unicast_and_carries_the_ip() -> None:
    mac = mac_for(IPv4Address("10.0.3.7"))
    assert mac == bytes.fromhex("02760a000307")
    assert mac[0] & 0x02 and not mac[0] & 0x01
