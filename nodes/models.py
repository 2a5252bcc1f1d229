"""Chat models: the offline scripted model, token estimates, and loading real LangChain models."""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

__all__ = [
    "ModelConfigError",
    "ScriptPolicy",
    "ScriptedChatModel",
    "estimate_tokens",
    "load_chat_model",
]

ScriptPolicy = Callable[[Sequence[BaseMessage], Sequence[dict[str, Any]]], AIMessage]
"""Decides the next reply from the conversation and the bound tool schemas."""

# Provider prefix -> (module, class) for `load_chat_model` when `langchain` is not installed.
_PROVIDERS = {
    "openai": ("langchain_openai", "ChatOpenAI"),
    "anthropic": ("langchain_anthropic", "ChatAnthropic"),
    "ollama": ("langchain_ollama", "ChatOllama"),
    "google_genai": ("langchain_google_genai", "ChatGoogleGenerativeAI"),
    "mistralai": ("langchain_mistralai", "ChatMistralAI"),
}


class ModelConfigError(ValueError):
    """A model spec cannot be loaded (says which package or setting is missing)."""


def _message_chars(message: BaseMessage) -> int:
    size = (
        len(message.content)
        if isinstance(message.content, str)
        else len(json.dumps(message.content, default=str))
    )
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        size += len(json.dumps(tool_calls, default=str))
    return size


def estimate_tokens(
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] = (),
    *,
    tools_chars: int | None = None,
) -> int:
    """A cheap, deterministic token estimate (≈ 4 chars a token, 4 tokens of framing a message).

    Used to reserve budget before a call and by the scripted model to report usage. Pass
    `tools_chars` (the size of the serialised tool schemas) to avoid re-encoding them per call.
    """
    chars = sum(_message_chars(m) for m in messages)
    if tools_chars is not None:
        chars += tools_chars
    elif tools:
        chars += len(json.dumps(list(tools)))
    return chars // 4 + 4 * len(messages)


def _stable_call_id(messages: Sequence[BaseMessage], name: str, args: Any, index: int) -> str:
    # Derived from the conversation so a re-run from a checkpoint yields the same ids.
    last = messages[-1].content if messages else ""
    seed = json.dumps(
        [len(messages), str(last)[:200], name, args, index], sort_keys=True, default=str
    )
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:20]


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model for tests, demos and benchmarks: no network, no key.

    Give it either `responses` (played in order) or a `policy` (a function of the conversation
    and the bound tools). It supports `bind_tools`, reports `usage_metadata` from
    `estimate_tokens`, and can simulate model latency.
    """

    responses: list[AIMessage] | None = None
    """Replies to play in order; running out raises a clear error."""
    policy: ScriptPolicy | None = None
    """Function deciding each reply; used when `responses` is None."""
    latency_s: float = 0.0
    """Simulated model latency per call, in seconds."""
    model_name: str = "scripted"
    """Name used for pricing and traces."""

    _played: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "bastion-scripted"

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tool schemas (dicts, pydantic models, functions or LangChain tools)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _next_reply(
        self, messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]
    ) -> AIMessage:
        if self.responses is not None:
            if self._played >= len(self.responses):
                raise ModelConfigError(
                    f"ScriptedChatModel ran out of responses after {len(self.responses)} calls; "
                    "add more responses or use a policy"
                )
            reply = self.responses[self._played]
            self._played += 1
            return reply
        if self.policy is None:
            raise ModelConfigError("ScriptedChatModel needs `responses` or a `policy`")
        return self.policy(messages, tools)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: Sequence[dict[str, Any]] = (),
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency_s:
            time.sleep(self.latency_s)
        reply = self._next_reply(messages, tools)
        tool_calls = [
            {
                **call,
                "id": call.get("id") or _stable_call_id(messages, call["name"], call["args"], i),
            }
            for i, call in enumerate(reply.tool_calls)
        ]
        tokens_in = estimate_tokens(messages, tools)
        tokens_out = max(1, estimate_tokens([reply]) - 4)
        message = AIMessage(
            content=reply.content,
            tool_calls=tool_calls,
            invalid_tool_calls=reply.invalid_tool_calls,
            additional_kwargs=reply.additional_kwargs,
            response_metadata={"model_name": self.model_name},
            usage_metadata={
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def load_chat_model(spec: str, **kwargs: Any) -> BaseChatModel:
    """Load a real LangChain chat model from `"provider:model"`, e.g. `"openai:gpt-4o-mini"`.

    Uses `langchain.chat_models.init_chat_model` when `langchain` is installed, otherwise the
    provider's own package (`langchain-openai`, `langchain-anthropic`, ...).

    Raises:
        ModelConfigError: the spec is malformed or the provider package is not installed.
    """
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise ModelConfigError(
            f"model spec {spec!r} must look like 'provider:model', e.g. 'openai:gpt-4o-mini' or "
            "'anthropic:claude-sonnet-4-5'"
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        pass
    else:
        return init_chat_model(model, model_provider=provider, **kwargs)
    if provider not in _PROVIDERS:
        raise ModelConfigError(
            f"unknown model provider {provider!r}; known without `langchain` installed: "
            f"{sorted(_PROVIDERS)}. Install `langchain` for every provider it supports."
        )
    module_name, class_name = _PROVIDERS[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        raise ModelConfigError(
            f"model {spec!r} needs the `{package}` package: pip install {package}"
        ) from error
    model_class: type[BaseChatModel] = getattr(module, class_name)
    return model_class(model=model, **kwargs)  # type: ignore[call-arg]
