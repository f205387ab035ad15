"""Graphs for the portal's tests, served by a real `langgraph dev` (offline, no model provider).

- echo:   answers "echo: <last user text>" without a model (no usage reported)
- chatty: streams tokens from langchain_core's fake chat model, which reports usage at the end
- boom:   streams a few tokens, then raises ValueError
- slow:   stays silent for ``seconds`` (input, default 6), then answers; for heartbeats and cancels
"""
from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langgraph.graph import END, START, MessagesState, StateGraph

CHATTY_ANSWER = "The portal streams this answer token by token."


def _usage(messages, answer: str) -> dict:
    """One token per word, as a real provider would report its own count."""
    prompt, output = sum(len(str(m.content).split()) for m in messages), len(answer.split())
    return {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}


class FakeChatModelWithUsage(GenericFakeChatModel):
    """The fake chat model, plus the usage report a real provider sends (on the last chunk when
    streamed, on the message when not)."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any):
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        message = result.generations[0].message
        message.usage_metadata = _usage(messages, str(message.content))
        return result

    def _stream(self, messages, stop=None, run_manager=None, **kwargs: Any):
        text = ""
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            text += chunk.message.content
            yield chunk
        last = ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=_usage(messages, text)))
        if run_manager:
            run_manager.on_llm_new_token("", chunk=last)
        yield last


def _last_text(state: MessagesState) -> str:
    return str(state["messages"][-1].content) if state["messages"] else ""


def _echo(state: MessagesState):
    return {"messages": [AIMessage(content=f"echo: {_last_text(state)}")]}


def _chatty(state: MessagesState):
    model = FakeChatModelWithUsage(messages=iter([AIMessage(content=CHATTY_ANSWER)]))
    return {"messages": [model.invoke(state["messages"])]}


def _boom(state: MessagesState):
    model = FakeChatModelWithUsage(messages=iter([AIMessage(content="starting to think")]))
    model.invoke(state["messages"])
    raise ValueError("the boom graph failed on purpose")


class SlowState(MessagesState):
    seconds: float


async def _slow(state: SlowState):
    await asyncio.sleep(float(state.get("seconds") or 6))
    return {"messages": [AIMessage(content="slept")]}


def _single(node, state=MessagesState):
    builder = StateGraph(state)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile()


echo = _single(_echo)
chatty = _single(_chatty)
boom = _single(_boom)
slow = _single(_slow, SlowState)
