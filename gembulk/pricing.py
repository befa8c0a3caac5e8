"""Token prices per model (a dated table shipped as package data, overridable) and what a run costs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from gembulk.errors import UsageError
from gembulk.jsonfiles import read_json
from gembulk.records import Usage

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; prompts longer than `long_above` tokens are billed at the long rates.

    Context caching: tokens read from a cache (`usage.cached_tokens`, part of the prompt) cost
    `cached_input`, and a cache costs `cache_storage` per million tokens per hour it exists. A model
    without a cached price has no explicit caching; cached tokens it reports are billed as input.
    """

    input: float
    output: float
    input_long: float | None = None
    output_long: float | None = None
    long_above: int | None = None
    cached_input: float | None = None
    cached_input_long: float | None = None
    cache_storage: float | None = None  # USD per million tokens per hour

    @property
    def supports_caching(self) -> bool:
        return self.cached_input is not None

    def _long(self, usage: Usage) -> bool:
        return self.long_above is not None and usage.prompt_tokens > self.long_above

    def input_rate(self, usage: Usage) -> float:
        return self.input_long if self._long(usage) and self.input_long is not None else self.input

    def cached_rate(self, usage: Usage) -> float | None:
        if self._long(usage) and self.cached_input_long is not None:
            return self.cached_input_long
        return self.cached_input

    def cost(self, usage: Usage, factor: float = 1.0) -> float:
        """USD for one answer; `factor` discounts fresh input and output (the Batch API), not cached
        tokens: Google bills a batch's cache hits "the same as for non-batch API traffic"."""
        long = self._long(usage)
        input_rate = self.input_rate(usage)
        output_rate = self.output_long if long and self.output_long is not None else self.output
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = self.cached_rate(usage)
        # Thinking tokens are billed as output.
        billed_output = usage.output_tokens + usage.thoughts_tokens
        fresh = (usage.prompt_tokens - cached) * input_rate + billed_output * output_rate
        if cached_rate is None:
            return (fresh + cached * input_rate) * factor / PER_MILLION
        return (fresh * factor + cached * cached_rate) / PER_MILLION

    def cache_saving(self, usage: Usage, factor: float = 1.0) -> float:
        """What the cached tokens of one answer saved against sending them as fresh input."""
        cached_rate = self.cached_rate(usage)
        if cached_rate is None or not usage.cached_tokens:
            return 0.0
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return cached * (self.input_rate(usage) * factor - cached_rate) / PER_MILLION

    def storage_cost(self, tokens: int, hours: float) -> float:
        """USD for keeping `tokens` in a cache for `hours`."""
        return tokens * (self.cache_storage or 0.0) * hours / PER_MILLION


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, the date and source they were read from, and the Batch API discount."""

    models: dict[str, ModelPrice]
    date: str
    source: str
    batch_discount: float = 0.5

    def price_for(self, model: str) -> ModelPrice | None:
        """Exact name first, then the longest known name that prefixes it (e.g. dated versions)."""
        name = model.removeprefix("models/")
        if name in self.models:
            return self.models[name]
        matches = [known for known in self.models if name.startswith(known + "-")]
        return self.models[max(matches, key=len)] if matches else None

    def cost(self, model: str, usage: Usage | None, *, batch: bool = False) -> float | None:
        """USD for one answer; None when the model has no known price."""
        price = self.price_for(model)
        if price is None or usage is None:
            return None if price is None else 0.0
        return price.cost(usage, self.batch_discount if batch else 1.0)

    def cache_saving(self, model: str, usage: Usage | None, *, batch: bool = False) -> float:
        """USD the answer's cached tokens saved against fresh input (0 for an unpriced model)."""
        price = self.price_for(model)
        if price is None or usage is None:
            return 0.0
        return price.cache_saving(usage, self.batch_discount if batch else 1.0)


def _parse(data: dict[str, Any], origin: str) -> tuple[dict[str, ModelPrice], dict[str, Any]]:
    try:
        models = {name: ModelPrice(**fields) for name, fields in (data.get("models") or {}).items()}
    except TypeError as exc:
        raise UsageError(f"{origin}: bad price entry ({exc})") from exc
    return models, data


def load_prices(override_path: str | None = None) -> PriceTable:
    """The shipped table, with a user's JSON file (same shape, any subset of models) layered on top."""
    shipped = json.loads(resources.files("gembulk").joinpath("data/prices.json").read_text(encoding="utf-8"))
    models, meta = _parse(shipped, "prices.json")
    date, source = meta["date"], meta["source"]
    discount = float(meta.get("batch_discount", 0.5))
    if override_path is not None:
        user = read_json(override_path, "the price table", UsageError)
        if not isinstance(user, dict):
            raise UsageError(f"{override_path}: prices must be a JSON object with a 'models' object")
        user_models, _ = _parse(user, override_path)
        models = {**models, **user_models}
        date = str(user.get("date", f"{date} + {override_path}"))
        source = str(user.get("source", override_path))
        discount = float(user.get("batch_discount", discount))
    return PriceTable(models=models, date=date, source=source, batch_discount=discount)
