"""The patches to Faust's internals are for one Faust version, and leave other apps alone."""

import faust
import pytest

from stream.errors import FaustVersionError
from stream.worker import faust_patches


def test_another_faust_version_is_refused(monkeypatch):
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(FaustVersionError, match=r"0\.16\.0"):
        faust_patches.install()


def test_an_app_without_lanes_drains_as_faust_does(monkeypatch):
    import asyncio

    calls = []

    async def original(consumer, fetcher):
        calls.append("faust")

    async def lane(consumer, fetcher, lanes):
        calls.append("lane")

    monkeypatch.setattr(faust_patches, "_original_drain", original)
    monkeypatch.setattr(faust_patches, "drain", lane)

    class Consumer:
        def __init__(self, app):
            self.app = app

    plain = faust.App("plain-app")
    ecm = faust_patches.EcmApp("ecm-app")
    ecm.lanes = faust_patches.Lanes({}, 10)
    asyncio.run(faust_patches._drain_messages(Consumer(plain), None))
    asyncio.run(faust_patches._drain_messages(Consumer(ecm), None))
    assert calls == ["faust", "lane"]
