"""The support tools' argument types and output models (their contracts' data shapes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

__all__ = [
    "SIMULATED_DRAFT_ID",
    "CancelReceipt",
    "Cents",
    "CustomerRecord",
    "DraftId",
    "DraftReceipt",
    "Email",
    "InvoiceRecord",
    "OrderId",
    "OrderRecord",
    "PreferenceReceipt",
    "PreferenceText",
    "PreferenceTopic",
    "Reason",
    "RefundReceipt",
    "SendReceipt",
    "Subject",
]

SIMULATED_DRAFT_ID = 999_999
"""The draft id a simulated `draft_email` returns; a simulated `send_email` accepts it, so a
shadow run goes on to "send" the reply it drafted."""


def _cents(amount: float) -> float:
    if round(amount, 2) != amount:
        raise ValueError(f"amounts are in dollars and cents (at most 2 decimals), got {amount}")
    return amount


# `[0-9]`, not `\d`: pydantic's Rust regex `\d` also matches fullwidth and other digits.
OrderId = Annotated[
    str, Field(pattern=r"^ORD-[0-9]{4}$", description="Order number, e.g. ORD-1001")
]
# ASCII only: a Cyrillic lookalike domain or a fullwidth address is not our customer.
Email = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
        max_length=254,
    ),
]
# One line: a CR/LF in a subject could smuggle in mail headers (`Bcc:`).
Subject = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n]*$")]
Reason = Annotated[str, Field(min_length=3, max_length=500, pattern=r"\S")]
Cents = Annotated[float, Field(gt=0, le=100_000), AfterValidator(_cents)]
DraftId = Annotated[int, Field(gt=0, le=2**31 - 1)]
# A memory key: lower-case words joined by `_` (`preferred_name`, `contact_channel`).
PreferenceTopic = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$", description="e.g. preferred_name")
]
# One short line: it is shown to agents later, so it must not pass for instructions or headers.
PreferenceText = Annotated[
    str, Field(min_length=1, max_length=120, pattern=r"^[^\r\n]*\S[^\r\n]*$")
]


class CustomerRecord(BaseModel):
    """A customer and their order numbers."""

    id: str
    name: str
    email: str
    tier: str
    orders: list[str]


class OrderRecord(BaseModel):
    """An order with the money refunded on it so far (reversed refunds excluded)."""

    id: str
    customer_id: str
    item: str
    amount: float
    status: str
    placed_at: str
    notes: str = ""
    refunded: float


class InvoiceRecord(BaseModel):
    """The invoice of an order."""

    id: str
    order_id: str
    amount: float
    status: str


class CancelReceipt(BaseModel):
    """A cancelled order, with the status it had before (what undo restores)."""

    order_id: str
    status: Literal["cancelled"] = "cancelled"
    previous_status: str
    event_id: int = Field(ge=0, description="The cancellation's order event; 0 when simulated.")
    replayed: bool = False
    simulated: bool = False


class RefundReceipt(BaseModel):
    """A refund issued (refund_id 0 when simulated)."""

    refund_id: int = Field(ge=0)
    order_id: str
    amount: float
    replayed: bool = False
    simulated: bool = False


class DraftReceipt(BaseModel):
    """A drafted email (`SIMULATED_DRAFT_ID` when simulated)."""

    draft_id: int = Field(gt=0)
    replayed: bool = False
    simulated: bool = False


class SendReceipt(BaseModel):
    """A sent email."""

    draft_id: int = Field(gt=0)
    to: str
    status: Literal["sent"] = "sent"
    replayed: bool = False
    simulated: bool = False


class PreferenceReceipt(BaseModel):
    """A customer preference remembered (or found already remembered)."""

    customer: str
    topic: str
    preference: str
    memory_commit: str = Field(
        description="Commit that wrote it now; empty when nothing was written (it was "
        "already remembered, or the call was simulated)."
    )
    version: int = Field(ge=0, description="Version of the record; 0 when simulated.")
    unchanged: bool = False
    simulated: bool = False
    overwrote: str = Field(
        default="",
        description="When another writer changed the preference while this one was being "
        "written and last-writer-wins settled it: what was replaced (never silent).",
    )
