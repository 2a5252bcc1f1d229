"""Model price table: what a model call costs, in US dollars, from its token usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable"]


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """Price of one model, per million tokens."""

    input_per_million: float
    """US dollars per 1,000,000 input (prompt) tokens."""
    output_per_million: float
    """US dollars per 1,000,000 output (completion) tokens."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollar cost of a call with this usage."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    # The scripted model is priced like a small hosted model so the demo's cost column means
    # something; real models are looked up by their LangChain `model_name`.
    "scripted": ModelPrice(input_per_million=0.50, output_per_million=1.50),
    # The offline demo's cheaper fallback (what a team would switch to near a budget cap).
    "scripted-mini": ModelPrice(input_per_million=0.10, output_per_million=0.30),
    "gpt-4o-mini": ModelPrice(input_per_million=0.15, output_per_million=0.60),
    "gpt-4o": ModelPrice(input_per_million=2.50, output_per_million=10.00),
    "claude-3-5-haiku-latest": ModelPrice(input_per_million=0.80, output_per_million=4.00),
    "claude-sonnet-4-5": ModelPrice(input_per_million=3.00, output_per_million=15.00),
}


@dataclass(frozen=True, kw_only=True)
class PriceTable:
    """Looks up model prices; unknown models cost `fallback` so spend is never silently zero."""

    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    """Prices by model name. A name matches exactly, or by its longest listed prefix."""
    fallback: ModelPrice = ModelPrice(input_per_million=5.0, output_per_million=15.0)
    """Price charged for a model that is not listed: deliberately pessimistic."""

    def price_of(self, model_name: str) -> ModelPrice:
        """The price for `model_name`, by exact name, then longest prefix, then the fallback."""
        if model_name in self.prices:
            return self.prices[model_name]
        prefixes = [name for name in self.prices if model_name.startswith(name)]
        return self.prices[max(prefixes, key=len)] if prefixes else self.fallback

    def cost(self, model_name: str, input_tokens: int, output_tokens: int) -> float:
        """Dollar cost of one call of `model_name` with this usage."""
        return self.price_of(model_name).cost(input_tokens, output_tokens)
