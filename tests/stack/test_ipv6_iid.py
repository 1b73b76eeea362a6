"""Interface identifiers: modified EUI-64, RFC 7217 stable privacy, solicited-node groups."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from vipernet.errors import UsageError
from vipernet.stack.ipv6_iid import (
    LINK_LOCAL_PREFIX,
    is_reserved_iid,
    modified_eui64,
    multicast_mac,
    solicited_node,
    stable_privacy_iid,
    with_iid,
)

KEY = bytes(range(32))
PREFIX = IPv6Network("2001:db8:1:2::/64")


@pytest.mark.parametrize(("mac", "iid"), [
    ("525400123456", "505400fffe123456"),  # locally administered: u bit ends up clear
    ("001122334455", "021122fffe334455"),  # universal: u bit ends up set
])
def test_modified_eui64_inserts_fffe_and_flips_the_universal_local_bit(mac: str,
                                                                       iid: str) -> None:
    assert modified_eui64(bytes.fromhex(mac)).hex() == iid


def test_link_local_from_eui64() -> None:
    address = with_iid(LINK_LOCAL_PREFIX, modified_eui64(bytes.fromhex("525400123456")))
    assert address == IPv6Address("fe80::5054:ff:fe12:3456")


def test_stable_privacy_is_stable_for_the_same_inputs() -> None:
    first = stable_privacy_iid(PREFIX, "eth0", b"", 0, KEY)
    assert first == stable_privacy_iid(PREFIX, "eth0", b"", 0, KEY)
    assert len(first) == 8


@pytest.mark.parametrize("change", ["prefix", "iface", "network", "counter", "key"])
def test_stable_privacy_changes_with_every_input(change: str) -> None:
    args = {"prefix": PREFIX, "net_iface": "eth0", "network_id": b"", "dad_counter": 0,
            "secret_key": KEY}
    other = {"prefix": IPv6Network("2001:db8:1:3::/64"), "iface": "eth1", "network": b"ssid",
             "counter": 1, "key": bytes(32)}[change]
    name = {"prefix": "prefix", "iface": "net_iface", "network": "network_id",
            "counter": "dad_counter", "key": "secret_key"}[change]
    changed = dict(args, **{name: other})
    assert stable_privacy_iid(**changed) != stable_privacy_iid(**args)  # type: ignore[arg-type]


def test_stable_privacy_refuses_a_short_key() -> None:
    with pytest.raises(UsageError):
        stable_privacy_iid(PREFIX, "eth0", b"", 0, b"short")


def test_reserved_identifiers_of_rfc5453() -> None:
    assert is_reserved_iid(bytes(8))
    assert is_reserved_iid(bytes.fromhex("fdffffffffffff80"))
    assert is_reserved_iid(bytes.fromhex("02005efffe001234"))
    assert not is_reserved_iid(bytes.fromhex("505400fffe123456"))


def test_solicited_node_and_its_mac() -> None:
    group = solicited_node(IPv6Address("2001:db8::5054:ff:fe12:3456"))
    assert group == IPv6Address("ff02::1:ff12:3456")
    assert multicast_mac(group).hex() == "3333ff123456"


def test_with_iid_needs_a_64_bit_prefix() -> None:
    with pytest.raises(UsageError):
        with_iid(IPv6Network("2001:db8::/48"), bytes(8))
