"""Rego policies on regopy: source analysis, compile checks and the bundle-backed engine."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regopy import Input, Interpreter, LogLevel, NodeKind, RegoError
from regopy import rego_shared as native

from guards.base import PolicyDecision, PolicyMeta, PolicyRequest
from guards.decisions import (
    DEFAULT_CACHE_SIZE,
    CacheStats,
    DecisionCache,
    PolicyGroup,
    ScopeIndex,
    evaluate_cached,
)
from guards.errors import PolicyBundleError

if TYPE_CHECKING:
    from guards.bundle import PolicyBundle

__all__ = ["RegoModule", "RegoPolicyEngine", "compile_check", "parse_module"]

# Strings and comments are blanked before the source is scanned, so that a message such as
# "customer data must not leave" is not mistaken for a reference to `data`.
_NOISE = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)[ \t]*$", re.M)
_RULE_HEAD = re.compile(r"^[ \t]*(?:default[ \t]+)?([A-Za-z_]\w*)", re.M)
_IMPURE = re.compile(r"\b(?:time\.|rand\.|uuid\.|http\.send\b|opa\.runtime\b|net\.lookup)")
_INPUT_REF = re.compile(r"\binput\b(?:\.([A-Za-z_]\w*))?")
_DATA_REF = re.compile(r"\bdata\b(?:\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*))?")
_ERROR_HEAD = re.compile(rb"\(error(?![a-z])(?: (\d+):)?")
_ERROR_MSG = re.compile(rb"\(errormsg (\d+):")
_WHERE = re.compile(rb"\|(\d+)\|(\d+)")


@dataclass(frozen=True, kw_only=True)
class RegoModule:
    """A Rego file and what a static scan of it found."""

    file: str
    """Path relative to the bundle root (the name compile errors use)."""
    source: str
    """The Rego text."""
    package: str
    """Dotted package name (`data.<package>` is its document)."""
    rules: frozenset[str]
    """Names of the rules it defines (a policy needs `deny` or `escalate`)."""
    pure: bool
    """No `time.`, `rand.`, `uuid.`, `http.send`, `opa.runtime`, `net.lookup`: cacheable."""
    reads: frozenset[str] | None
    """Top-level input fields it references; None when it uses `input` as a whole."""
    data_refs: frozenset[str] | None
    """Dotted `data.` paths it references; None when it uses `data` as a whole."""


def parse_module(file: str, source: str) -> RegoModule:
    """Scan `source` for its package, rule names, purity and the input/data it reads."""
    code = _NOISE.sub('""', source)
    package = _PACKAGE.search(code)
    if package is None:
        raise PolicyBundleError(
            f"Rego file `{file}` declares no package this loader can read. Hint: start it with "
            "a dotted name, e.g. `package bastion.refunds`.",
            path=file,
        )
    inputs = [m.group(1) for m in _INPUT_REF.finditer(code)]
    data = [m.group(1) for m in _DATA_REF.finditer(code)]
    return RegoModule(
        file=file,
        source=source,
        package=package.group(1),
        rules=frozenset(_RULE_HEAD.findall(code)),
        pure=_IMPURE.search(code) is None,
        reads=None if None in inputs else frozenset(inputs),
        data_refs=None if None in data else frozenset(data),
    )


def _interpreter() -> Interpreter:
    interp = Interpreter()
    interp.log_level = LogLevel.NONE
    # OPA's default turns a failing builtin into "undefined", which would silently allow.
    interp.strict_built_in_errors = True
    return interp


def _problems(text: str) -> list[tuple[str | None, int | None, str]]:
    """(file, byte offset, message) of each error in regopy's error-tree text."""
    data = text.encode()
    found = []
    for head in _ERROR_HEAD.finditer(data):
        pos, file, offset = head.end(), None, None
        if head.group(1):
            size = int(head.group(1))
            file = data[pos : pos + size].decode(errors="replace")
            where = _WHERE.match(data, pos + size)
            offset = int(where.group(1)) if where else None
        msg = _ERROR_MSG.search(data, pos)
        message = (
            data[msg.end() : msg.end() + int(msg.group(1))].decode(errors="replace")
            if msg
            else "unknown error"
        )
        found.append((file, offset, message))
    return found


def _node_errors(node: int) -> str:
    """The error-tree text of an error (or error sequence) node."""
    if native.rego.regoNodeType(node) == NodeKind.ErrorSeq:
        size = native.rego_node_size(node)
        return "\n".join(native.rego_node_json(native.rego_node_get(node, i)) for i in range(size))
    return str(native.rego_node_json(node))


def _compile_error(text: str, modules: Sequence[RegoModule]) -> PolicyBundleError:
    problems = _problems(text) or [(None, None, text.strip()[:300])]
    file, offset, message = next((p for p in problems if p[0]), problems[0])
    sources = {m.file: m.source for m in modules}
    line = None
    if file in sources and offset is not None:
        line = sources[file].encode()[:offset].count(b"\n") + 1
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    where = f"line {line}: " if line else ""
    return PolicyBundleError(
        f"Rego file `{file}` does not compile: {where}{message}{more}. Hint: fix the line shown; "
        "policies use Rego v1 syntax (`import rego.v1`, `deny contains msg if {...}`).",
        path=file,
        line=line,
    )


def compile_check(modules: Sequence[RegoModule], data_json: str, packages: Sequence[str]) -> None:
    """Compile every module with the data once, or raise `PolicyBundleError` (file and line)."""
    interp = _interpreter()
    try:
        interp.add_data_json(data_json)
    except RegoError as error:
        raise PolicyBundleError(
            f"`data.json` is not accepted by Rego: {error}", path="data.json"
        ) from None
    try:
        for module in modules:
            interp.add_module(module.file, module.source)
        built = interp.build("_ = true", [p.replace(".", "/") for p in packages])
    except RegoError as error:
        raise _compile_error(str(error), modules) from None
    if not built.ok():
        raise _compile_error(_node_errors(native.rego_bundle_node(built._impl)), modules)


def _closure(bundle: PolicyBundle, members: tuple[int, ...]) -> tuple[RegoModule, ...]:
    """The modules a group needs: its policies, every library, and policy packages they read."""
    everything = (*bundle.libraries, *(p.module for p in bundle.policies))
    packages = {p.module.package: p.module for p in bundle.policies}
    chosen = {bundle.policies[i].module.package: bundle.policies[i].module for i in members}
    pending = [*chosen.values(), *bundle.libraries]
    while pending:
        refs = pending.pop().data_refs
        if refs is None:
            return everything
        for ref in refs:
            for package, module in packages.items():
                related = ref == package or ref.startswith(package + ".")
                if package not in chosen and (related or package.startswith(ref + ".")):
                    chosen[package] = module
                    pending.append(module)
    return (*bundle.libraries, *chosen.values())


def _outcome(doc: Any) -> tuple[list[str], list[str], str | None]:
    """A package document's `deny` and `escalate` sets, or why they are not usable."""
    if not isinstance(doc, dict):
        return [], [], f"its package evaluated to {json.dumps(doc)[:80]}, not an object"
    sets = []
    for name in ("deny", "escalate"):
        value = doc.get(name, [])
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            why = f"`{name}` must be a set of strings (`{name} contains msg if {{...}}`)"
            return [], [], f"{why}, got {json.dumps(value)[:80]}"
        sets.append(value)
    return sets[0], sets[1], None


class _RegoGroup(PolicyGroup):
    """The policies of one route, compiled into one query over only the modules they need."""

    def __init__(self, loaded: _Loaded, members: tuple[int, ...]) -> None:
        bundle = loaded.bundle
        modules = _closure(bundle, members)
        reads = [m.reads for m in modules]
        super().__init__(
            tuple(bundle.policies[i].meta for i in members),
            pure=all(m.pure for m in modules),
            reads=None if None in reads else frozenset().union(*reads),  # type: ignore[arg-type]
        )
        self._loaded = loaded
        self._entrypoints = [bundle.policies[i].module.package.replace(".", "/") for i in members]
        query = "; ".join(
            f"x{j} = data.{bundle.policies[i].module.package}" for j, i in enumerate(members)
        )
        self._builder, self._compiled, self._error = _interpreter(), None, None
        try:  # compile errors were refused at load; anything here fails the group closed
            self._builder.add_data_json(bundle.data_json)
            for module in modules:
                self._builder.add_module(module.file, module.source)
            compiled = self._builder.build(query, self._entrypoints)
            if compiled.ok():
                self._compiled = compiled
            else:
                self._error = _node_errors(native.rego_bundle_node(compiled._impl))
        except RegoError as error:
            self._error = str(error)

    def run(self, request: PolicyRequest) -> PolicyDecision:
        if self._compiled is None:
            why = "; ".join(p[2] for p in _problems(self._error or "")) or str(self._error)
            return self._all_failed(f"its group failed to compile: {why}")
        doc = dict(zip(self.fields, self._values(request), strict=True))
        loaded = self._loaded
        with loaded.lock:  # one interpreter per bundle; regopy objects are not thread-safe
            try:
                loaded.runner.set_input(Input(doc))
            except (RegoError, ValueError) as error:
                return self._all_failed(f"the request cannot be a Rego input: {error}")
            text, failure = _query(loaded.runner, self._compiled, None)
            if failure is not None or text == "undefined":
                # Some policy failed the joint query: ask each alone to name the culprit.
                return self.decide([self._alone(entrypoint) for entrypoint in self._entrypoints])
        bindings = json.loads(text)["bindings"]
        return self.decide([_outcome(bindings[f"x{j}"]) for j in range(len(self.metas))])

    def _all_failed(self, why: str) -> PolicyDecision:
        return self.decide([((), (), why)] * len(self.metas))

    def _alone(self, entrypoint: str) -> tuple[list[str], list[str], str | None]:
        text, failure = _query(self._loaded.runner, self._compiled, entrypoint)
        if failure is not None:
            return [], [], "; ".join(p[2] for p in _problems(failure)) or failure[:200]
        if text == "undefined":
            return [], [], "its package evaluated to undefined"
        return _outcome(json.loads(text)["expressions"][0])


def _query(runner: Interpreter, compiled: Any, entrypoint: str | None) -> tuple[str, str | None]:
    """Run the compiled query (or one entry point): (result JSON, None) or ("", error text)."""
    # The low-level calls skip regopy's Output wrapper, which fetches and parses the text twice.
    if entrypoint is None:
        out = native.rego_bundle_query(runner._impl, compiled._impl)
    else:
        out = native.rego_bundle_query_entrypoint(runner._impl, compiled._impl, entrypoint)
    try:
        node = native.rego_output_node(out)
        if not native.rego_output_ok(out) or native.rego.regoNodeType(node) in (
            NodeKind.Error,
            NodeKind.ErrorSeq,
        ):
            return "", _node_errors(node)
        return native.rego_output_string(out), None
    finally:
        native.rego_free_output(out)


class _Loaded:
    """One bundle generation: its index, compiled groups, cache and query interpreter."""

    def __init__(self, bundle: PolicyBundle, cache_size: int) -> None:
        self.bundle = bundle
        self.lock = threading.Lock()
        self.runner = _interpreter()
        self.cache = DecisionCache(cache_size)
        self.index = ScopeIndex([p.meta for p in bundle.policies], self._group)

    def _group(self, members: tuple[int, ...]) -> _RegoGroup:
        with self.lock:
            return _RegoGroup(self, members)


class RegoPolicyEngine:
    """A `PolicyEngine` over a verified Rego bundle.

    Each request runs one compiled query over the policies in its scope only. `reload` swaps
    bundles atomically and keeps the old one serving when the new one is refused.
    """

    def __init__(
        self,
        bundle: PolicyBundle,
        *,
        key: bytes | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """Serve `bundle`; `key` is required of bundles given to `reload` later."""
        self._key = key
        self._cache_size = cache_size
        self._reload_lock = threading.Lock()
        self._loaded = _Loaded(bundle, cache_size)

    @classmethod
    def from_directory(
        cls, path: str | Path, *, key: bytes | None = None, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> RegoPolicyEngine:
        """Load and verify the bundle in `path` (signed with `key`, if given) and serve it."""
        from guards.bundle import load_bundle  # bundle.py imports this module's compiler

        return cls(load_bundle(path, key=key), key=key, cache_size=cache_size)

    @property
    def bundle(self) -> PolicyBundle:
        """The bundle being served."""
        return self._loaded.bundle

    @property
    def revision(self) -> str:
        """Revision of the bundle being served."""
        return self._loaded.bundle.revision

    @property
    def policies(self) -> tuple[PolicyMeta, ...]:
        """Contracts of the bundle's policies."""
        return tuple(p.meta for p in self._loaded.bundle.policies)

    @property
    def cache_stats(self) -> CacheStats:
        """The current bundle's decision-cache counters."""
        return self._loaded.cache.stats

    def reload(self, path: str | Path | None = None, *, key: bytes | None = None) -> PolicyBundle:
        """Load the bundle at `path` (default: the current one's) and swap it in atomically.

        Args:
            path: bundle directory; defaults to where the current bundle came from.
            key: signing key; defaults to the engine's.

        Raises:
            PolicyBundleError: the new bundle is refused; the previous one keeps serving.
        """
        from guards.bundle import load_bundle  # bundle.py imports this module's compiler

        with self._reload_lock:
            key = self._key if key is None else key
            bundle = load_bundle(self.bundle.path if path is None else path, key=key)
            self._loaded, self._key = _Loaded(bundle, self._cache_size), key
        return bundle

    def evaluate(self, request: PolicyRequest) -> PolicyDecision:
        """Decide one request; policies that fail to evaluate are reported in `errors`."""
        loaded = self._loaded
        return evaluate_cached(loaded.index, loaded.cache, request)
