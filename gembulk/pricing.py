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
    """USD per million tokens; prompts longer than `long_above` tokens are billed at the long rates."""

    input: float
    output: float
    input_long: float | None = None
    output_long: float | None = None
    long_above: int | None = None

    def cost(self, usage: Usage) -> float:
        long = self.long_above is not None and usage.prompt_tokens > self.long_above
        input_rate = self.input_long if long and self.input_long is not None else self.input
        output_rate = self.output_long if long and self.output_long is not None else self.output
        # Thinking tokens are billed as output.
        billed_output = usage.output_tokens + usage.thoughts_tokens
        return (usage.prompt_tokens * input_rate + billed_output * output_rate) / PER_MILLION


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
        factor = self.batch_discount if batch else 1.0
        return price.cost(usage) * factor


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
