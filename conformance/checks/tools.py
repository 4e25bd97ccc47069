"""Tools: tool_choice required / named / none / unknown, and the shape of the tool calls returned.

tools and tool_choice are documented parameters (1.2), so what a tool_choice value asks for is MUST;
finish_reason "tool_calls" and the rejection of an unknown name are OpenAI behaviour, hence SHOULD.
"""

from __future__ import annotations

import json
from typing import Any

from .._context import CheckContext, excerpt
from .._model import Depth, Feature, Level, documented, openai
from ..http import Exchange
from ._judge import completion_or_stop, completion_tokens, envelope_problems, first_message
from ._registry import check


def _function(name: str, description: str, param: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {param: {"type": "string"}}, "required": [param]}}}


TOOLS = [_function("get_weather", "Current weather in a city.", "city"),
         _function("get_time", "Current time in an IANA timezone.", "timezone")]
NAMES = tuple(t["function"]["name"] for t in TOOLS)
ASK = "What is the weather in Paris right now?"
# Names the function, so that a server treating the choice as `auto` calls it.
ASK_NAMING = "Use get_weather to look up the weather in Paris."
# Arguments are JSON: a cut at 16 tokens would break them on a real model; a call cut anyway is
# retried once with RETRY_MAX_TOKENS before it is judged.
TOOLS_MAX_TOKENS = 64
RETRY_MAX_TOKENS = 4 * TOOLS_MAX_TOKENS
# Small enough to cut any call: the name and the first piece of the arguments at most.
CUT_MAX_TOKENS = 2
# Statuses that say "who are you" or "slow down", not "this request is invalid".
NOT_A_REJECTION = (401, 403, 429)


def tools_request(ctx: CheckContext, tool_choice: Any, ask: str = ASK, max_tokens: int = TOOLS_MAX_TOKENS
                  ) -> dict[str, Any]:
    return ctx.chat_request(messages=[{"role": "user", "content": ask}], tools=TOOLS, tool_choice=tool_choice,
                            max_tokens=max_tokens)


def named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def tools_completion(ctx: CheckContext, exchange: Exchange) -> dict[str, Any]:
    """The completion, or `unsupported` when the target answered a 4xx naming tools (tools are optional)."""
    exchange.require_response()
    declared = ctx.declined(exchange, Feature.TOOLS, "tool")
    if declared is not None:
        raise declared
    return completion_or_stop(ctx, exchange)


def forced_call(ctx: CheckContext, tool_choice: Any) -> Exchange:
    """The reply to a forced tool_choice that max_tokens did not cut (one retry with more room).

    A call cut by max_tokens has arguments that are legitimately not JSON: judging them would fail
    the model's length, not the server. Cut twice is inconclusive.
    """
    for max_tokens in (TOOLS_MAX_TOKENS, RETRY_MAX_TOKENS):
        exchange = ctx.chat(tools_request(ctx, tool_choice, max_tokens=max_tokens))
        body = tools_completion(ctx, exchange)
        why = cut_by_max_tokens(body, max_tokens)
        if why is None:
            return exchange
    raise ctx.inconclusive(f"the forced tool call was cut by max_tokens twice (last at {max_tokens}: {why}); a "
                           f"cut call's arguments cannot be judged")


def cut_by_max_tokens(body: dict[str, Any], max_tokens: int) -> str | None:
    """Why the first choice reads as cut by max_tokens: finish_reason length, or a call whose arguments are
    not JSON when completion_tokens reached max_tokens; None when it was not cut."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    if choice.get("finish_reason") == "length":
        return 'finish_reason "length"'
    message = choice.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    tokens = completion_tokens(body)
    if tokens is not None and tokens >= max_tokens and broken_arguments(calls):
        return f"completion_tokens {tokens} = max_tokens and arguments that are not JSON"
    return None


def broken_arguments(calls: Any) -> list[int]:
    """Positions of the calls whose function.arguments is a string that does not parse as JSON."""
    broken = []
    for i, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except ValueError:
                broken.append(i)
    return broken


def judge_calls(ctx: CheckContext, exchange: Exchange, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Require tool_calls, each with an id, type function, a name in `allowed` and JSON-object arguments."""
    message, _ = first_message(ctx, exchange, tools_completion(ctx, exchange))
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls:
        raise ctx.stop("a non-empty choices[0].message.tool_calls", f"tool_calls = {excerpt(repr(calls), 150)}, "
                       f"content = {excerpt(repr(message.get('content')), 150)}",
                       ctx.where(exchange, "choices[0].message.tool_calls"), exchange=exchange)
    for i, call in enumerate(calls):
        for problem in call_problems(call, allowed):
            ctx.fail(f"a tool call with an id, type function, a name in {list(allowed)} and arguments as a JSON "
                     f"string of an object", problem, ctx.where(exchange, f"choices[0].message.tool_calls[{i}]"),
                     exchange=exchange)
    return calls


def call_problems(call: Any, allowed: tuple[str, ...]) -> list[str]:
    if not isinstance(call, dict):
        return [f"the call is {type(call).__name__}, not an object"]
    problems = []
    if not isinstance(call.get("id"), str) or not call["id"]:
        problems.append(f"id = {call.get('id')!r}")
    if call.get("type") != "function":
        problems.append(f"type = {call.get('type', '<absent>')!r}")
    function = call.get("function")
    if not isinstance(function, dict):
        return [*problems, f"function = {function!r}"]
    if function.get("name") not in allowed:
        problems.append(f"function.name = {function.get('name', '<absent>')!r}")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        problems.append(f"function.arguments is a JSON {type(arguments).__name__}, not a string: "
                        f"{excerpt(repr(arguments), 120)}")
    else:
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
            problems.append(f"function.arguments does not parse as JSON: {excerpt(repr(arguments), 120)}")
        if parsed is not None and not isinstance(parsed, dict):
            problems.append(f"function.arguments parses to a {type(parsed).__name__}, not an object")
    return problems


@check(
    "tools.required-call",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.TOOLS,
    clause=documented("1.2 tool_choice", "Controls which (if any) function is called by the model."),
    description='tool_choice "required" gives tool_calls, each with an id, type function, a name among the tools '
                "and arguments as a JSON string of an object (a call cut by max_tokens is retried once with more "
                "room).",
    requests=2,
)
def required_call(ctx: CheckContext) -> None:
    judge_calls(ctx, forced_call(ctx, "required"), NAMES)


@check(
    "tools.named-call",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.TOOLS,
    clause=documented("1.2 tool_choice", "Controls which (if any) function is called by the model."),
    description="A named tool_choice (get_time, on a weather question) calls exactly that function, with JSON "
                "string arguments (a call cut by max_tokens is retried once with more room).",
    requests=2,
    depths=(Depth.FULL,),
)
def named_call(ctx: CheckContext) -> None:
    judge_calls(ctx, forced_call(ctx, named("get_time")), ("get_time",))


@check(
    "tools.cut-call-finish-length",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.TOOLS,
    clause=documented("2 finish_reason", "E.g., stop (natural stop) or length (reached maximum length)."),
    description=f"A forced tool call that hits max_tokens={CUT_MAX_TOKENS} (completion_tokens = max_tokens, no "
                f"call or arguments that are not JSON) says finish_reason length, so no client runs a broken call.",
    depths=(Depth.FULL,),
)
def cut_call_finish_length(ctx: CheckContext) -> None:
    """A cut reply that says "tool_calls" sends clients off to run a call whose arguments do not parse."""
    exchange = ctx.chat(tools_request(ctx, named("get_weather"), max_tokens=CUT_MAX_TOKENS))
    body = tools_completion(ctx, exchange)
    message, finish = first_message(ctx, exchange, body)
    tokens = completion_tokens(body)
    if tokens is None:
        raise ctx.not_applicable("usage.completion_tokens is missing or not an integer, so a cut call cannot be told "
                                 "from a malformed one (judged by usage.present and usage.total-is-sum)")
    calls = message.get("tool_calls")
    broken = broken_arguments(calls)
    ctx.details.update(completion_tokens=tokens, finish_reason=finish, broken_calls=broken)
    if tokens > CUT_MAX_TOKENS:
        # Not the model's doing: the server generated past the cap it was given (found on llmock).
        raise ctx.stop(f"at most max_tokens = {CUT_MAX_TOKENS} completion tokens for the forced tool call",
                       f"completion_tokens {tokens}, finish_reason {finish!r}",
                       ctx.where(exchange, "usage.completion_tokens"), exchange=exchange)
    if tokens < CUT_MAX_TOKENS or (calls and not broken):
        raise ctx.inconclusive(f"the reply was not cut at max_tokens={CUT_MAX_TOKENS}: completion_tokens {tokens}, "
                               f"tool_calls {excerpt(repr(calls), 150)}")
    what = f"tool_calls[{broken[0]}].function.arguments not JSON" if broken else "no tool call"
    ctx.expect(finish == "length", f'finish_reason "length": the reply reached max_tokens = {CUT_MAX_TOKENS} ({what})',
               repr(finish), ctx.where(exchange, "choices[0].finish_reason"), exchange=exchange)


@check(
    "tools.finish-reason",
    model_dependent=True,
    level=Level.SHOULD,
    feature=Feature.TOOLS,
    # Judged under `auto`: under a forced tool_choice OpenAI has been reported to answer finish_reason "stop".
    clause=openai("CreateChatCompletionResponse.choices[].finish_reason",
                  "tool_calls if the model called a tool"),
    description='When the model calls a tool under tool_choice "auto", finish_reason is "tool_calls".',
    depths=(Depth.FULL,),
)
def finish_reason(ctx: CheckContext) -> None:
    exchange = ctx.chat(tools_request(ctx, "auto", ASK_NAMING))
    message, finish = first_message(ctx, exchange, tools_completion(ctx, exchange))
    if not message.get("tool_calls"):
        raise ctx.inconclusive('the model chose not to call a tool under tool_choice "auto"')
    ctx.expect(finish == "tool_calls", 'finish_reason "tool_calls" beside tool_calls', repr(finish),
               ctx.where(exchange, "choices[0].finish_reason"), exchange=exchange)


@check(
    "tools.none-no-calls",
    model_dependent=True,
    level=Level.MUST,
    feature=Feature.TOOLS,
    clause=documented("1.2 tool_choice", "Controls which (if any) function is called by the model."),
    description='tool_choice "none" gives no tool_calls, even when the prompt asks for a tool by name.',
    depths=(Depth.FULL,),
)
def none_no_calls(ctx: CheckContext) -> None:
    exchange = ctx.chat(tools_request(ctx, "none", ASK_NAMING))
    message, finish = first_message(ctx, exchange, tools_completion(ctx, exchange))
    calls = message.get("tool_calls")
    ctx.expect(not calls, 'no tool_calls under tool_choice "none" (absent, null or [])',
               f"tool_calls = {excerpt(repr(calls), 200)}", ctx.where(exchange, "choices[0].message.tool_calls"),
               exchange=exchange)
    ctx.expect(finish != "tool_calls", 'a finish_reason other than "tool_calls"', repr(finish),
               ctx.where(exchange, "choices[0].finish_reason"), exchange=exchange)


@check(
    "tools.unknown-named-function",
    level=Level.SHOULD,
    feature=Feature.TOOLS,
    # SHOULD: the documents do not say what happens; OpenAI answers 400 invalid_request_error.
    clause=openai("CreateChatCompletionRequest.tool_choice",
                  "Specifying a particular tool via {\"type\": \"function\", \"function\": {\"name\": "
                  "\"my_function\"}} forces the model to call that tool."),
    description="A named tool_choice whose function is not in tools is rejected with a 4xx and the error envelope.",
    accepts=("400", "404", "422", "other 4xx except 401/403/429"),
    depths=(Depth.FULL,),
)
def unknown_named_function(ctx: CheckContext) -> None:
    exchange = ctx.chat(tools_request(ctx, named("get_stock_price")))
    exchange.require_response()
    status = exchange.status or 0
    if not 400 <= status < 500 or status in NOT_A_REJECTION:
        raise ctx.stop("a 4xx rejection of tool_choice naming get_stock_price, which is not in tools",
                       f"HTTP {status}: {excerpt(exchange.text, 200)}", ctx.where(exchange), exchange=exchange)
    for problem in envelope_problems(exchange):
        ctx.fail("the rejection uses the error envelope {error: {message, type, param, code}}", problem,
                 ctx.where(exchange), exchange=exchange)
