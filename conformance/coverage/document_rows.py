"""The coverage map's data: every row and statement of documented-api.txt, in the document's order.

Edit by hand. Each row is one statement, named by a stable key and a short quote copied from the
document, with one answer:

    enforced(key, quote, "check.id", ...)   the checks that enforce it
    untestable(key, quote, reason)          why no request can observe it from outside
    gap(key, quote, reason)                 testable, but no check does it yet

Quotes are verbatim. The document runs its table cells together ("temperaturenumberNo1Sampling
…"); a quote separates cells with " | ", and the tests drop those separators before they look the
quote up in the document (whitespace runs, such as the example's line breaks, count as one space).
A check ID here must be in the catalogue (`conformance checks`); renaming a check means editing
its rows.
"""

from __future__ import annotations

from ._row import Row, enforced, gap, untestable

# Reasons shared by several rows.
SAMPLING = ("not observable without a model: it shapes the model's sampling, and no single answer shows "
            "the distribution it was drawn from")
DEFAULT_UNOBSERVABLE = ("not observable: a request that omits the parameter and one that sends the default "
                        "may get different samples, so no answer tells them apart")
ADVICE = "advice to the caller: it states no behaviour of the server"

ROWS: tuple[Row, ...] = (
    # --- introduction and endpoint ---------------------------------------------------------------------
    enforced("intro.completions", "the model will return one or more predicted completions",
             "methods.post-chat", "sampling.n-choices"),
    enforced("intro.controls", "control the randomness, length, and format of the generated output",
             "sampling.deterministic", "sampling.max-tokens-length", "json-mode.object"),
    enforced("endpoint.name", "Endpoint Name: List Models / Chat Completions",
             "methods.models-list", "methods.get-quirk"),
    enforced("endpoint.method", "HTTP Method: GET (Note: Based on the provided data definition)",
             "methods.get-quirk", "documented.request-example-documented-route"),
    enforced("endpoint.url", "Endpoint URL: https://api.codingplanx.ai/v1/models",
             "methods.get-quirk", "methods.models-list", "documented.request-example-documented-route"),
    untestable("endpoint.status", "Status: Released",
               "the release status of the documentation: no request can observe it"),

    # --- 1.1 header parameters -------------------------------------------------------------------------
    enforced("header.content-type", "Content-Type | Yes | String | application/json | Request body format.",
             "params.malformed-body", "documented.request-example"),
    enforced("header.accept", "Accept | Yes | String | application/json | Expected response format.",
             "schema.content-type", "errors.content-type"),
    enforced("header.authorization",
             "Authorization | No | String | Bearer {{YOUR_API_KEY}} | API key used for authentication.",
             "auth.missing-key", "auth.wrong-key"),

    # --- 1.2 body parameters ---------------------------------------------------------------------------
    enforced("body.json-body", "the following parameters are usually passed via the JSON Body.",
             "documented.request-example-documented-route", "methods.get-quirk"),
    enforced("body.model", "model | string | Yes", "params.required", "params.wrong-type"),
    enforced("body.model.meaning", "ID of the model to use.", "errors.unknown-model"),
    untestable("body.model.example", "Example: gpt-3.5-turbo.",
               "a model the target need not serve: the run sends its own (--model, or the first id of GET /models)"),
    enforced("body.messages", "messages | array | Yes", "params.required", "params.wrong-type"),
    enforced("body.messages.meaning", "A list of messages comprising the conversation so far.",
             "fuzz.schemathesis.positive"),
    enforced("body.messages.role-content", "Each message contains a role and content.",
             "params.unknown-role", "fuzz.schemathesis.negative"),
    enforced("body.temperature", "temperature | number | No", "params.temperature.bounds", "params.wrong-type"),
    untestable("body.temperature.default", "temperature | number | No | 1", DEFAULT_UNOBSERVABLE),
    enforced("body.temperature.range", "Sampling temperature, between 0 and 2.", "params.temperature.bounds"),
    untestable("body.temperature.effect", "Higher values will make the output more random.", SAMPLING),
    enforced("body.top_p", "top_p | number | No", "params.top_p.bounds"),
    untestable("body.top_p.default", "top_p | number | No | 1", DEFAULT_UNOBSERVABLE),
    untestable("body.top_p.meaning",
               "Nucleus sampling. 0.1 means only the tokens comprising the top 10% probability mass are considered.",
               SAMPLING + " (the range 0..1 that params.top_p.bounds enforces is OpenAI's: the document states none)"),
    enforced("body.n", "n | integer | No", "params.n.bounds", "params.wrong-type"),
    gap("body.n.default", "n | integer | No | 1",
        "a request without n should get exactly one choice; no check counts the choices of such a request yet"),
    enforced("body.n.meaning", "How many chat completion choices to generate for each input message.",
             "sampling.n-choices", "stream.n-partition", "documented.request-example"),
    enforced("body.stream", "stream | boolean | No", "params.wrong-type"),
    enforced("body.stream.default", "stream | boolean | No | false", "stream.not-sse-when-false"),
    enforced("body.stream.meaning", "Whether to stream back partial progress.",
             "stream.content-type", "stream.not-sse-when-false"),
    enforced("body.stream.sse", "If set to true, partial message deltas will be sent via Server-Sent Events (SSE).",
             "stream.content-type", "stream.data-is-json", "stream.first-delta-role", "stream.equivalent-content"),
    enforced("body.stop", "stop | string/array | No", "sampling.stop", "params.stop.max-items"),
    untestable("body.stop.default", "stop | string/array | No | null",
               "not observable: without a stop sequence the answer ends wherever the model ends it"),
    enforced("body.stop.effect",
             "The model will stop generating further tokens when it encounters these characters.",
             "sampling.stop", "stream.stop"),
    enforced("body.max_tokens", "max_tokens | integer | No", "params.max-tokens.bounds"),
    untestable("body.max_tokens.default", "max_tokens | integer | No | inf",
               "not observable: no finite answer shows that there was no limit (and inf is not JSON)"),
    enforced("body.max_tokens.meaning", "The maximum number of tokens to generate in the chat completion.",
             "sampling.max-tokens-length", "stream.max-tokens", "usage.completion-bounded"),
    enforced("body.presence_penalty", "presence_penalty | number | No", "params.presence-penalty.bounds"),
    untestable("body.presence_penalty.default", "presence_penalty | number | No | 0", DEFAULT_UNOBSERVABLE),
    enforced("body.presence_penalty.range", "Number between -2.0 and 2.0.", "params.presence-penalty.bounds"),
    untestable("body.presence_penalty.effect",
               "Positive values increase the model's likelihood to talk about new topics.", SAMPLING),
    enforced("body.frequency_penalty", "frequency_penalty | number | No", "params.frequency-penalty.bounds"),
    untestable("body.frequency_penalty.default", "frequency_penalty | number | No | 0", DEFAULT_UNOBSERVABLE),
    enforced("body.frequency_penalty.range", "Number between -2.0 and 2.0.", "params.frequency-penalty.bounds"),
    untestable("body.frequency_penalty.effect",
               "Positive values decrease the model's likelihood to repeat the same line verbatim.", SAMPLING),
    enforced("body.logit_bias", "logit_bias | object | No", "params.logit-bias.values"),
    untestable("body.logit_bias.default", "logit_bias | object | No | null", DEFAULT_UNOBSERVABLE),
    untestable("body.logit_bias.effect", "Modify the likelihood of specified tokens appearing in the completion.",
               "token IDs belong to the target model's tokenizer, which the suite does not know; " + SAMPLING),
    enforced("body.user", "user | string | No", "documented.request-example"),
    untestable("body.user.purpose",
               "A unique identifier representing your end-user, which can help monitor and detect abuse.",
               "monitoring happens inside the provider: nothing in the answer shows it"),
    enforced("body.response_format", "response_format | object | No", "json-mode.object"),
    enforced("body.response_format.meaning", "Specifies the format that the model must output.",
             "json-mode.object", "json-mode.schema"),
    enforced("body.response_format.json-mode", 'E.g., { "type": "json_object" } enables JSON mode.',
             "json-mode.object"),
    enforced("body.tools", "tools | array | No", "tools.required-call"),
    enforced("body.tools.meaning", "A list of tools the model may call (such as functions).",
             "tools.required-call", "tools.named-call", "tools.finish-reason", "stream.tool-call-deltas",
             "sdk.tool-call"),
    enforced("body.tool_choice", "tool_choice | object | No", "tools.named-call"),
    untestable("body.tool_choice.default", "tool_choice | object | No | auto",
               "under auto the model decides whether to call, so an answer without a call cannot tell the default "
               "from a model that chose not to call"),
    enforced("body.tool_choice.meaning", "Controls which (if any) function is called by the model.",
             "tools.none-no-calls", "tools.required-call", "tools.named-call", "tools.unknown-named-function"),

    # --- 2 response parameters -------------------------------------------------------------------------
    enforced("response.id", "id | string", "schema.chat-completion", "documented.request-example"),
    gap("response.id.unique", "A unique identifier for the chat completion request.",
        "two completions should carry different ids; no check compares the ids of two requests yet"),
    enforced("response.object", "object | string | The object type, which is typically chat.completion.",
             "schema.chat-completion"),
    enforced("response.created",
             "created | integer | The Unix timestamp (in seconds) of when the request was created.",
             "schema.chat-completion", "documented.request-example"),
    enforced("response.choices", "choices | array | A list of chat completion choices.",
             "schema.chat-completion", "sampling.n-choices"),
    enforced("response.choices.index", "index | integer | The index of the choice in the list.",
             "sampling.n-choices", "documented.request-example"),
    enforced("response.choices.message", "message | object | The specific message generated by the model.",
             "schema.chat-completion", "sdk.create"),
    enforced("response.choices.message.role",
             "role | string | The role of the author of this message, typically assistant.",
             "schema.message-role"),
    enforced("response.choices.message.content", "content | string | The textual content of the message.",
             "sdk.create", "documented.request-example"),
    enforced("response.choices.finish_reason",
             "finish_reason | string | The reason the model stopped generating tokens.",
             "sampling.finish-reason-enum", "documented.request-example"),
    enforced("response.choices.finish_reason.values",
             "E.g., stop (natural stop) or length (reached maximum length).",
             "sampling.max-tokens-length", "sampling.stop", "tools.cut-call-finish-length"),
    enforced("response.usage", "usage | object | Usage statistics for the completion request.",
             "usage.present", "documented.request-example"),
    enforced("response.usage.prompt_tokens",
             "prompt_tokens | integer | Number of tokens consumed by the input prompt.",
             "usage.total-is-sum", "usage.prompt-grows"),
    enforced("response.usage.completion_tokens",
             "completion_tokens | integer | Number of tokens generated in the output.",
             "usage.total-is-sum", "usage.completion-bounded", "usage.completion-counts-every-choice",
             "stream.equivalent-usage"),
    enforced("response.usage.total_tokens",
             "total_tokens | integer | Total number of tokens consumed (prompt + completion).",
             "usage.total-is-sum", "stream.usage-include"),

    # --- 3 request examples ----------------------------------------------------------------------------
    enforced("example.request", "Successful Request Example", "documented.request-example"),
    enforced("example.request.route", "curl --location --request GET 'https://api.codingplanx.ai/v1/models'",
             "documented.request-example-documented-route"),
    enforced("example.response", "Successful Response Example",
             "documented.request-example", "schema.chat-completion"),
    enforced("example.response.created", '"created": 1677652288,',
             "documented.request-example", "schema.chat-completion"),
    enforced("example.response.usage", '"total_tokens": 21', "usage.total-is-sum", "documented.request-example"),

    # --- 4 FAQs ----------------------------------------------------------------------------------------
    enforced("faq.get-vs-post.post", "creating completions generally uses the POST method.", "methods.post-chat"),
    enforced("faq.get-vs-post.get", "based on the provided metadata, this endpoint is defined as GET.",
             "methods.get-quirk", "documented.request-example-documented-route"),
    enforced("faq.get-vs-post.verify", "Please verify the actual server-side configuration when making API calls.",
             "methods.get-quirk-info"),
    enforced("faq.get-vs-post.fallback", "If GET does not work, try using POST.", "methods.post-chat",
             "methods.get-quirk"),
    untestable("faq.temperature-or-top-p",
               "We generally recommend altering either temperature or top_p, but not both.", ADVICE),
    untestable("faq.temperature.low", "If you want precise and deterministic answers, lower the temperature",
               SAMPLING),
    untestable("faq.temperature.high", "If you want more diverse and creative responses, increase it.", SAMPLING),
    enforced("faq.json-mode",
             'You need to set { "type": "json_object" } within the response_format parameter, and explicitly '
             "instruct the model (via System or User messages) to output in JSON format.",
             "json-mode.object"),
    untestable("faq.json-mode.without-instruction",
               "Otherwise, the model may generate parsing errors or an endless stream of whitespace.",
               "says what may happen when the caller omits the instruction: any answer is allowed"),
    untestable("faq.presence_penalty",
               "presence_penalty: Focuses on penalizing topics that have already appeared", SAMPLING),
    untestable("faq.frequency_penalty",
               "frequency_penalty: Focuses on penalizing exact words/phrases that appear frequently", SAMPLING),
    enforced("faq.streaming.sse", "the API returns data word-by-word via Server-Sent Events (SSE).",
             "stream.content-type", "stream.equivalent-content"),
    enforced("faq.streaming.data-prefix", "Each data chunk is a JSON string prefixed with data:",
             "stream.data-is-json", "stream.chunk-schema"),
    enforced("faq.streaming.done", "the stream is terminated with a data: [DONE] message.",
             "stream.done-terminator"),
    untestable("faq.streaming.use",
               "This is highly useful for displaying long-form text generation in real-time on UI/UX interfaces.",
               ADVICE),
)
