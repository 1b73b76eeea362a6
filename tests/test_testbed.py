"""The test bed itself: a namespace with a TAP appears, answers, and disappears."""

import subprocess

import pytest

from tests.testbed import GATEWAY, TestBed


@pytest.mark.testbed
def test_testbed_creates_and_removes_namespace_and_tap() -> None:
    bed = TestBed("bed")
    try:
        links = bed.ns(["ip", "-o", "addr", "show", "dev", bed.tap]).stdout
        assert f"{GATEWAY}/24" in links
        assert "10.0.2.3/24" in links
    finally:
        bed.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert bed.name not in names
    assert not bed.workdir.exists()


@pytest.mark.testbed
def test_testbed_dnsmasq_starts_and_stops() -> None:
    with TestBed("dns") as bed:
        proc = bed.start_dnsmasq()
        assert proc.poll() is None
    assert proc.poll() is not None
