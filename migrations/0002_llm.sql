-- What an LLM (or MCP) exchange means, as computed once per flow by src/llm
-- (the same Analysis the TUI, the filter, HAR, `stats` and `sessions` read).
-- All nullable: a row that is not an LLM/MCP exchange leaves them NULL.
--
--   api                    anthropic.messages | anthropic.count_tokens | openai.chat | openai.responses |
--                          openai.completions | openai.embeddings | gemini.generate | bedrock.invoke | mcp
--   model                  (existing) the model the request asked for
--   response_model         the model the response names (often a dated snapshot)
--   input_tokens           (existing) fresh input tokens, EXCLUDING cache reads and writes
--   output_tokens          (existing) output tokens, INCLUDING reasoning
--   cache_read_tokens      prompt tokens read from the cache
--   cache_creation_tokens  prompt tokens written to the cache
--   reasoning_tokens       the reasoning part of output_tokens
--   ttft_ms                request start to the first content delta
--   cost_usd               from the price table; NULL when the model is not in it
--   tool_calls             [{"name": …, "id": …}] of the response
--   ratelimit              {"anthropic-ratelimit-…": "…", "x-ratelimit-…": "…", "retry-after": "…"}
--   agent                  the client program and version, e.g. "claude-code 1.0.83"
--   mcp_method             the JSON-RPC method of an MCP exchange
ALTER TABLE "CCProxy_HttpTraces"
    ADD COLUMN IF NOT EXISTS api                   TEXT,
    ADD COLUMN IF NOT EXISTS response_model        TEXT,
    ADD COLUMN IF NOT EXISTS stop_reason           TEXT,
    ADD COLUMN IF NOT EXISTS cache_read_tokens     INT,
    ADD COLUMN IF NOT EXISTS cache_creation_tokens INT,
    ADD COLUMN IF NOT EXISTS reasoning_tokens      INT,
    ADD COLUMN IF NOT EXISTS ttft_ms               FLOAT,
    ADD COLUMN IF NOT EXISTS cost_usd              FLOAT,
    ADD COLUMN IF NOT EXISTS tool_calls            JSONB,
    ADD COLUMN IF NOT EXISTS ratelimit             JSONB,
    ADD COLUMN IF NOT EXISTS agent                 TEXT,
    ADD COLUMN IF NOT EXISTS mcp_method            TEXT,
    -- More than the issue asks for:
    ADD COLUMN IF NOT EXISTS provider              TEXT,    -- anthropic, openai, google, aws, azure, … or the API family
    ADD COLUMN IF NOT EXISTS response_id           TEXT,    -- msg_…, chatcmpl-…, resp_…
    ADD COLUMN IF NOT EXISTS stream                BOOLEAN, -- the response was streamed
    ADD COLUMN IF NOT EXISTS output_tokens_per_s   FLOAT,   -- output tokens / (end - first content delta)
    ADD COLUMN IF NOT EXISTS message_count         INT,     -- messages / input items / contents in the request
    ADD COLUMN IF NOT EXISTS system_bytes          INT,     -- size of the system prompt
    ADD COLUMN IF NOT EXISTS tools_bytes           INT,     -- size of the tool definitions
    ADD COLUMN IF NOT EXISTS tool_results          JSONB,   -- [{"tool_use_id": …, "is_error": …}] sent this turn
    ADD COLUMN IF NOT EXISTS llm_error             TEXT,    -- the error the API reported in its body
    ADD COLUMN IF NOT EXISTS llm_version           INT;     -- analysis version that filled these (backfill re-runs older ones)
