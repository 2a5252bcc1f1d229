"""Observability: what runs cost and, in later layers, how they are traced and audited."""

from observability.pricing import DEFAULT_PRICES, ModelPrice, PriceTable

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable"]
