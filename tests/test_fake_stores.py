"""The fake's stores on an injected clock: cache expiry, video processing, and the model catalog."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from gembulk.fake import vector
from gembulk.fake.caches import NOT_FOUND, Cache, CacheStore
from gembulk.fake.files import FileStore
from gembulk.fake.models import BUILTIN_MODELS, CATALOG, Catalog
from gembulk.fake.wire import Refusal
from gembulk.pricing import load_prices
from tests.clock import FakeClock

MODEL = "gemini-2.5-flash"
BIG = {"model": f"models/{MODEL}", "contents": [{"parts": [{"text": "w" * 4096}]}]}


def body(response: web.Response) -> Any:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def test_a_cache_lives_for_its_ttl_then_is_gone() -> None:
    clock = FakeClock()
    store = CacheStore(clock)
    created = body(store.create({**BIG, "ttl": "60s"}, Catalog(), "v1beta", strict=True))
    name = created["name"]
    clock.advance(59.9)
    assert isinstance(store.resolve(name, MODEL, {}), Cache)
    clock.advance(0.1)
    assert store.resolve(name, MODEL, {}) == Refusal(403, NOT_FOUND)
    assert store.get(name).status == 403 and body(store.list(_no_query()))["cachedContents"] == []


def test_default_ttl_and_patching_the_expiry() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    store = CacheStore(clock)
    name = body(store.create(BIG, Catalog(), "v1beta", strict=True))["name"]
    assert store.caches[name.split("/")[1]].expires == clock.now + 3600  # one hour unless told
    patched = body(store.patch(name, {"expireTime": "2023-11-14T23:13:20Z"}, "v1beta", strict=True))
    assert patched["expireTime"].startswith("2023-11-14T23:13:20.")
    bad = store.patch(name, {"ttl": "ten minutes"}, "v1beta", strict=True)
    assert bad.status == 400


def test_the_cache_minimum_follows_the_model() -> None:
    store = CacheStore(FakeClock())
    pro = {**BIG, "model": "models/gemini-2.5-pro"}
    assert store.create(pro, Catalog(), "v1beta", strict=True).status == 400  # 1,024 tokens < 4,096
    assert store.create(pro, Catalog(), "v1beta", strict=False).status == 200  # lenient: no minimum


def test_a_video_is_processing_until_its_time_has_passed() -> None:
    clock = FakeClock()
    files = FileStore(clock)
    files.processing = 5.0
    video = files.put("v1", b"\0", "video/mp4")
    audio = files.put("a1", b"\0", "audio/mpeg")
    assert (files.active("v1"), files.active("a1")) == (False, True)
    assert video.to_json("http://h", "v1beta", clock.now)["state"] == "PROCESSING"
    clock.advance(5.0)
    assert files.active("v1") and audio.to_json("http://h", "v1beta", clock.now)["state"] == "ACTIVE"


def test_vectors_are_deterministic_unit_length_and_truncate() -> None:
    full = vector("same text", 3072, 3072)
    assert full == vector("same text", 3072, 3072) != vector("other text", 3072, 3072)
    assert math.isclose(math.fsum(v * v for v in full), 1.0, rel_tol=1e-6)
    assert vector("same text", 128, 3072) == full[:128]


def test_the_catalog_knows_every_priced_model_and_the_extras() -> None:
    priced = set(load_prices().models)
    assert priced <= set(CATALOG), priced - set(CATALOG)
    assert set(BUILTIN_MODELS) == {name for name, spec in CATALOG.items() if spec.supports("generateContent")}
    catalog = Catalog(("my-tuned-model", "my-embedding-model"))
    tuned, embedding = catalog.get("models/my-tuned-model"), catalog.get("my-embedding-model")
    assert tuned is not None and tuned.supports("generateContent") and not tuned.supports("embedContent")
    assert embedding is not None and embedding.supports("embedContent") and embedding.embed_dims == 3072


def _no_query() -> web.Request:
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("GET", "/v1beta/cachedContents")
