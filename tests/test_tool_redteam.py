"""Red-team tests for tool arguments: each attack gets a clear message and the tool never runs."""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tools import (
    ExecutionGateway,
    ToolConfigError,
    ToolInvocation,
    ToolRegistry,
    ToolResult,
    tool_contract,
)
from tools.screen import MAX_ARG_DEPTH, MAX_KEY_CHARS, screen_arguments

CALLS: list[tuple[str, dict[str, Any]]] = []
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# `[0-9]`, not `\d`: pydantic's regex engine gives `\d` every Unicode digit (see below).
OrderId = Annotated[str, Field(pattern=r"^ORD-[0-9]{4}$", description="e.g. ORD-1001")]


def relative_path(path: str) -> str:
    """The contract author's defence for a free-form path: relative, plain, inside the root."""
    if path.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", path):
        raise ValueError("must be a path relative to the workspace, not an absolute one")
    if ".." in re.split(r"[\\/]", path):
        raise ValueError("must not contain `..` segments; name the file inside the workspace")
    if "%" in path:
        raise ValueError("must not be percent-encoded; send the plain path")
    return path


SafePath = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(relative_path)]


class Address(BaseModel):
    """A shipping address (nested models need their own strict config)."""

    model_config = STRICT
    street: Annotated[str, Field(min_length=1, max_length=100)]
    zip: Annotated[str, Field(pattern=r"^[0-9]{5}$")]
    country: Literal["US", "DE"]


class Line(BaseModel):
    """One order line."""

    model_config = STRICT
    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-[0-9]{3}$")]
    qty: Annotated[int, Field(ge=1, le=99)]


@tool_contract()
def lookup_order(order_id: OrderId) -> dict[str, Any]:
    """Look up an order."""
    CALLS.append(("lookup_order", {"order_id": order_id}))
    return {"order_id": order_id, "status": "shipped"}


@tool_contract(side_effect="irreversible", zone="yellow")
def refund(
    order_id: OrderId,
    amount: Annotated[float, Field(gt=0, le=10_000)],
    reason: Annotated[str, Field(min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Refund money on an order."""
    CALLS.append(("refund", {"order_id": order_id, "amount": amount, "reason": reason}))
    return {"refunded": amount}


@tool_contract()
def read_file(path: SafePath) -> str:
    """Read a file from the workspace."""
    CALLS.append(("read_file", {"path": path}))
    return "contents"


@tool_contract()
def search(
    query: Annotated[str, Field(min_length=1, max_length=200)],
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
    sort: Literal["price", "name"] = "name",
) -> list[str]:
    """Search the catalogue."""
    CALLS.append(("search", {"query": query, "limit": limit, "sort": sort}))
    return [query]


@tool_contract()
def ship(address: Address, lines: Annotated[list[Line], Field(min_length=1, max_length=20)]) -> str:
    """Ship order lines to an address."""
    CALLS.append(("ship", {"address": address.model_dump(), "lines": len(lines)}))
    return "shipped"


GATEWAY = ExecutionGateway(ToolRegistry([lookup_order, refund, read_file, search, ship]))
GOOD: dict[str, dict[str, Any]] = {
    "lookup_order": {"order_id": "ORD-1001"},
    "refund": {"order_id": "ORD-1001", "amount": 25.0, "reason": "arrived broken"},
    "read_file": {"path": "reports/2024/summary.txt"},
    "search": {"query": "red shoes", "limit": 5, "sort": "price"},
    "ship": {
        "address": {"street": "1 Main St", "zip": "12345", "country": "US"},
        "lines": [{"sku": "ABC-123", "qty": 2}],
    },
}


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def call(tool: str, args: Any, thread: str = "t1", gateway: ExecutionGateway = GATEWAY):
    invocation = ToolInvocation(
        tool=tool, args=args, call_id="c1", tenant="acme", thread_id=thread, agent="red"
    )
    return gateway.execute(invocation)


DROP = object()


def good(tool: str, **changes: Any) -> dict[str, Any]:
    """The good arguments of `tool` with some replaced (or left out, given `DROP`)."""
    merged = {**GOOD[tool], **changes}
    return {k: v for k, v in merged.items() if v is not DROP}


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def fullwidth(text: str) -> str:
    """`text` in fullwidth forms (U+FF01..U+FF5E): it looks like `text` but is not."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def tags(text: str) -> str:
    """`text` spelled in invisible Unicode tag characters (a known prompt-smuggling trick)."""
    return "".join(chr(0xE0000 + ord(c)) for c in text)


def assert_refused(result: ToolResult, where: str, says: str) -> None:
    assert not result.ok and result.error_kind == "invalid_args", result
    assert where in result.content, f"{where!r} not named in: {result.content}"
    assert says in result.content, f"{says!r} not said in: {result.content}"
    assert result.content.isprintable(), f"not one printable line: {result.content!r}"
    assert len(result.content) <= 600, f"{len(result.content)} chars: {result.content[:200]}"
    assert result.attempts == 0 and not result.ran and result.idempotency_key is None
    assert CALLS == [], "the tool ran on refused arguments"


def attack(name: str, tool: str, says: str, *, at: str = "", raw: Any = DROP, **changes: Any):
    """A case: `tool` called with its good arguments but `changes` (or with `raw` arguments),
    refused with a message naming `at` (default: the changed field) and saying `says`."""
    args = raw if raw is not DROP else good(tool, **changes)
    return pytest.param(tool, args, at or f"`{next(iter(changes))}`", says, id=name)


ADDRESS, LINE = GOOD["ship"]["address"], GOOD["ship"]["lines"][0]
MALFORMED = [
    attack("list", "lookup_order", "got an array", at="`lookup_order`", raw=["ORD-1001"]),
    attack("string", "lookup_order", "got a string", at="`lookup_order`", raw="ORD-1001"),
    attack("none", "lookup_order", "got null", at="`lookup_order`", raw=None),
    attack("number", "lookup_order", "must be a JSON object", at="`lookup_order`", raw=1001),
    attack("missing", "refund", "Field required", amount=DROP),
    attack("extra", "refund", "Extra inputs", admin=True),
    attack("nested-extra", "ship", "Extra", at="`address.admin`", address={**ADDRESS, "admin": 1}),
    attack(
        "nested-type", "ship", "valid string", at="`address.zip`", address={**ADDRESS, "zip": 1}
    ),
    attack("item-type", "ship", "valid integer", at="`lines[0].qty`", lines=[{**LINE, "qty": "2"}]),
    attack("empty-list", "ship", "at least 1 item", lines=[]),
]
OVERSIZED = [
    attack("1MB", "refund", "limit of 16000", reason="x" * 1_000_000),
    attack("100k-items", "ship", "limit of 16000", at="`lines[", lines=[LINE] * 100_000),
    attack("deep-list", "ship", "deeper than 8", at="`lines[0][0]", lines=nested(10_000)),
    attack("deep-dict", "ship", "deeper than 8", at="`address.a.a", address=nested_dict(10_000)),
    attack(
        "50k-key", "lookup_order", "50000 chars long", at="`(arguments)`", raw={"k" * 50_000: 1}
    ),
    attack(
        "5k-fields",
        "search",
        "limit of 16000",
        at="`field",
        raw={f"field{i}": i for i in range(5000)},
    ),
    attack("over-max_length", "refund", "at most 500 characters", reason="x" * 5000),
]
TYPE_CONFUSION = [
    attack("str-int", "search", "valid integer", limit="12"),
    attack("float-int", "search", "valid integer", limit=12.5),
    attack("12.0-int", "search", "valid integer", limit=12.0),
    attack("bool-int", "search", "valid integer", limit=True),
    attack("huge-int", "search", "signed 64-bit range", limit=10**30),
    attack("bool-num", "refund", "valid number", amount=True),
    attack("str-nan", "refund", "valid number", amount="NaN"),
    attack("nan", "refund", "NaN, not a finite number", amount=float("nan")),
    attack("inf", "refund", "Infinity, not a finite number", amount=float("inf")),
    attack("1e309", "refund", "Infinity, not a finite number", amount=float("1e309")),
    attack("str-1e309", "refund", "valid number", amount="1e309"),
    attack("negative", "refund", "greater than 0", amount=-5.0),
    attack("zero", "refund", "greater than 0", amount=0),
    attack("over-max", "refund", "less than or equal to 10000", amount=10_000.01),
    attack("null", "refund", "valid number", amount=None),
    attack("list-for-str", "refund", "valid string", reason=[]),
    attack("dict-for-str", "refund", "valid string", reason={}),
    attack("int-for-str", "lookup_order", "valid string", order_id=1001),
    attack("bool-literal", "search", "'price' or 'name'", sort=True),
    attack("list-literal", "search", "'price' or 'name'", sort=["price"]),
    attack("python-set", "search", "JSON cannot carry", query={1, 2}),
    attack("bytes", "search", "JSON cannot carry", query=b"shoes"),
    attack("int-key", "search", "must be strings", at="`(arguments)`", raw={1: "shoes"}),
]
UNICODE = [
    attack("fullwidth", "lookup_order", "match pattern", order_id="ORD-" + fullwidth("1234")),
    attack("cyrillic-O", "lookup_order", "match pattern", order_id="\u041eRD-1001"),
    attack("rlo", "refund", "U+202E RIGHT-TO-LEFT OVERRIDE", reason="refund \u202egnp.exe"),
    attack("isolate", "refund", "U+2066 LEFT-TO-RIGHT ISOLATE", reason="ok \u2066x\u2069"),
    attack("zwsp", "lookup_order", "U+200B ZERO WIDTH SPACE", order_id="ORD-10\u200b01"),
    attack("bom", "lookup_order", "U+FEFF ZERO WIDTH NO-BREAK SPACE", order_id="\ufeffORD-1001"),
    attack("nul", "refund", "U+0000 NULL", reason="ok\x00; rm -rf /"),
    attack("lone-surrogate", "refund", "U+D800 (a surrogate", reason="a\ud800b"),
    attack("tags", "refund", "U+E0061 TAG LATIN SMALL LETTER A", reason="ok" + tags("approve")),
    attack("ansi", "refund", "U+001B ESCAPE", reason="ok \x1b[2J"),
    attack("c1", "refund", "U+009B", reason="ok \x9b"),
    attack("fw-literal", "search", "'price' or 'name'", sort=fullwidth("price")),
    attack("rlo-in-key", "refund", "U+202E", at='`["reason\\u202e"]`', **{"reason\u202e": "x"}),
    attack(
        "nested-zwj",
        "ship",
        "U+200D ZERO WIDTH JOINER",
        at="`lines[0].sku`",
        lines=[{**LINE, "sku": "ABC-1\u200d23"}],
    ),
]
INJECTION = [
    attack("id-dotdot", "lookup_order", "match pattern", order_id="../../etc/passwd"),
    attack("id-absolute", "lookup_order", "match pattern", order_id="/etc/shadow"),
    attack("id-sql-or", "lookup_order", "match pattern", order_id="ORD-1001' OR '1'='1"),
    attack(
        "id-sql-drop", "lookup_order", "match pattern", order_id="ORD-1001; DROP TABLE orders;--"
    ),
    attack("id-percent", "lookup_order", "match pattern", order_id="%2e%2e%2f"),
    attack("id-trailing-newline", "lookup_order", "match pattern", order_id="ORD-1001\n"),
    attack("path-dotdot", "read_file", "`..` segments", path="../../etc/passwd"),
    attack("path-inner-dotdot", "read_file", "`..` segments", path="reports/../../secret"),
    attack("path-backslash-dotdot", "read_file", "`..` segments", path="..\\..\\boot.ini"),
    attack("path-absolute", "read_file", "not an absolute one", path="/etc/shadow"),
    attack("path-drive", "read_file", "not an absolute one", path="C:\\Windows\\system.ini"),
    attack("path-home", "read_file", "not an absolute one", path="~/.ssh/id_rsa"),
    attack("path-percent", "read_file", "percent-encoded", path="%2e%2e%2f"),
    attack("path-empty", "read_file", "at least 1 character", path=""),
]
ATTACKS = {
    "malformed": MALFORMED,
    "oversized": OVERSIZED,
    "type-confusion": TYPE_CONFUSION,
    "unicode": UNICODE,
    "injection": INJECTION,
}


@pytest.mark.parametrize(
    "tool, args, where, says",
    [
        pytest.param(*case.values, id=f"{kind}:{case.id}")
        for kind, cases in ATTACKS.items()
        for case in cases
    ],
)
def test_each_attack_is_refused_before_the_tool_runs_and_harms_nothing(
    tool: str, args: Any, where: str, says: str, request: pytest.FixtureRequest
) -> None:
    assert_refused(call(tool, args), where, says)
    assert_gateway_unharmed(tool, request.node.name)


def assert_gateway_unharmed(tool: str, thread: str) -> None:
    """An honest call right after the attack still runs, once, with its own arguments."""
    result = call(tool, GOOD[tool], thread=thread)
    assert result.ok and result.ran, result
    assert [name for name, _ in CALLS] == [tool]


def test_backslash_d_accepts_fullwidth_digits_so_contracts_use_0_9() -> None:
    @tool_contract()
    def lax_lookup(order_id: Annotated[str, Field(pattern=r"^ORD-\d{4}$")]) -> str:
        """Look up an order, with a `\\d` pattern."""
        CALLS.append(("lax_lookup", {"order_id": order_id}))
        return order_id

    gateway = ExecutionGateway(ToolRegistry([lax_lookup]))
    lookalikes = [
        "ORD-" + fullwidth("1234"),
        "ORD-\u0661\u0662\u0663\u0664",  # Arabic-Indic digits
        "ORD-\u07c1\u07c2\u07c3\u07c4",  # N'Ko digits
    ]
    for order_id in lookalikes:
        assert call("lax_lookup", {"order_id": order_id}, gateway=gateway).ok
        assert not call("lookup_order", {"order_id": order_id}).ok, "`[0-9]` must refuse it"
    assert [args["order_id"] for _, args in CALLS] == lookalikes


def test_a_free_form_str_is_no_defence_the_contract_must_say_what_it_accepts() -> None:
    @tool_contract()
    def naive_read(path: str, note: str) -> str:
        """Read a file, with no constraint on the path."""
        CALLS.append(("naive_read", {"path": path, "note": note}))
        return path

    gateway = ExecutionGateway(ToolRegistry([naive_read]))
    args = {"path": "../../etc/passwd", "note": "x'; DROP TABLE orders;--"}
    assert call("naive_read", args, gateway=gateway).ok
    assert [("naive_read", args)] == CALLS, "plain str passes traversal and SQL text verbatim"
    CALLS.clear()
    assert_refused(call("read_file", {"path": args["path"]}), "`path`", "`..` segments")


def test_a_huge_bad_input_is_not_echoed_back() -> None:
    for field, value in [("order_id", "A" * 15_000), ("reason", "B" * 15_000)]:
        result = call("refund", good("refund", **{field: value}))
        assert_refused(result, f"`{field}`", "(got '")
        assert "A" * 81 not in result.content and "B" * 81 not in result.content
        assert len(result.content) < 300


def test_the_screen_runs_before_anything_serialises_the_arguments() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert "deeper than 8" in (screen_arguments({"x": cyclic}) or "")
    # 20,000 levels: a recursive walk (or json.dumps) would hit the recursion limit first.
    assert "deeper than 8" in (screen_arguments(nested_dict(20_000)) or "")


def test_honest_arguments_pass_the_screen_untouched() -> None:
    class Colour(IntEnum):
        RED = 1

    honest: dict[str, Any] = {
        "body": "Hello,\n\tthanks for waiting.\r\nBest — Ana 😀 ✓",
        "names": ["日本語", "Ελληνικά", "עברית", "العربية", fullwidth("ABC")],
        "nested": {"deep": [[[[[{"ok": None}]]]]]},  # 8 levels: the limit
        "numbers": [0, -1, 2**63 - 1, 1.5, -0.0, True, Colour.RED],
        "pair": (1, 2),
    }
    assert screen_arguments(honest) is None
    assert honest["names"][4] == fullwidth("ABC"), "the screen never rewrites text"


@pytest.mark.parametrize(
    "args, says",
    [
        pytest.param({"a": nested(MAX_ARG_DEPTH - 1)}, None, id="depth-at-limit"),
        pytest.param({"a": nested(MAX_ARG_DEPTH)}, "deeper than 8", id="depth-over-limit"),
        pytest.param({"k" * MAX_KEY_CHARS: 1}, None, id="key-at-limit"),
        pytest.param({"k" * (MAX_KEY_CHARS + 1): 1}, "257 chars long", id="key-over-limit"),
        pytest.param({"a": "x" * 15_990}, None, id="size-at-limit"),
        pytest.param({"a": "x" * 16_000}, "at least 16009 chars", id="size-over-limit"),
        pytest.param({"a": [-(2**63), 2**63 - 1]}, None, id="int-at-limits"),
        pytest.param({"a": 2**63}, "9223372036854775808, outside", id="int-over-limit"),
        pytest.param({"a": -(2**63) - 1}, "-9223372036854775809, outside", id="int-under-limit"),
        pytest.param({"a": 10**5000}, "about 5001 digits", id="int-too-long-to-print"),
        pytest.param({"a\tb": 1}, "U+0009 CHARACTER TABULATION", id="tab-in-name"),
        pytest.param({"a": "\u00ad"}, "U+00AD SOFT HYPHEN", id="soft-hyphen"),
        pytest.param({"a": "\x7f"}, "U+007F DELETE", id="delete"),
        pytest.param({"a": "\u061c"}, "U+061C ARABIC LETTER MARK", id="alm"),
        # The price of refusing joiners: ZWJ emoji sequences and Persian ZWNJ are refused too.
        pytest.param({"a": "\U0001f469\u200d\U0001f4bb"}, "U+200D", id="zwj-emoji"),
        pytest.param(
            {"items": [{"name": "ok"}, {"name": "ab\u202ec"}]},
            "`items[1].name` contains U+202E RIGHT-TO-LEFT OVERRIDE at character 2",
            id="path-and-position",
        ),
    ],
)
def test_screen_limits_are_exact(args: dict[str, Any], says: str | None) -> None:
    problem = screen_arguments(args)
    assert problem is None if says is None else says in (problem or ""), problem


def test_an_oversized_string_is_refused_by_size() -> None:
    # How fast that is belongs to bench/ (timing targets never live in unit tests).
    assert "over the limit" in (screen_arguments({"a": "x" * 10_000_000}) or "")


def test_many_errors_do_not_amplify_the_message() -> None:
    @tool_contract()
    def total(values: list[int]) -> int:
        """Add numbers up."""
        CALLS.append(("total", {"values": values}))
        return sum(values)

    gateway = ExecutionGateway(ToolRegistry([total]))
    result = call("total", {"values": ["x"] * 3000}, gateway=gateway)  # 15 kB: under the limit
    assert not result.ok and result.error_kind == "invalid_args" and CALLS == []
    assert len(result.content) < 2000, f"{len(result.content)} chars from a 15 kB input"


class LaxLine(BaseModel):
    """A nested model whose author forgot the strict config."""

    qty: int


def test_a_nested_model_without_a_strict_config_is_refused_or_validated_strictly() -> None:
    def lax_ship(line: LaxLine) -> int:
        """Ship one line."""
        CALLS.append(("lax_ship", {"qty": line.qty}))
        return line.qty

    try:
        spec = tool_contract()(lax_ship)
    except ToolConfigError as error:  # refused at declaration: the author must fix the model
        assert "LaxLine" in str(error)
        return
    gateway = ExecutionGateway(ToolRegistry([spec]))
    assert not call("lax_ship", {"line": {"qty": "2"}}, gateway=gateway).ok, "coerced '2'"
    assert not call("lax_ship", {"line": {"qty": 2, "admin": True}}, gateway=gateway).ok
    assert CALLS == []
