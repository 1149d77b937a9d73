-- The seed's table, column for column (names and types), and its five indexes,
-- plus nullable extras. Written with IF NOT EXISTS so a table created by the
-- Python original (Prisma) is adopted and upgraded in place.
--
-- TIMESTAMP columns hold UTC. Headers are JSON objects keyed by lowercase
-- header name; a header sent more than once is stored once, its values joined
-- with ", " in wire order (RFC 9110 list semantics). Bodies are raw bytes,
-- content-decoded, cut at max_body_size; *_body_size keeps the full size.

CREATE TABLE IF NOT EXISTS "CCProxy_HttpTraces" (
    trace_id              TEXT PRIMARY KEY,
    method                TEXT NOT NULL,
    url                   TEXT NOT NULL,
    host                  TEXT NOT NULL,
    path                  TEXT NOT NULL,
    request_headers       JSONB,
    request_body          BYTEA,
    request_body_size     INT,
    request_content_type  TEXT,
    status_code           INT,
    response_headers      JSONB,
    response_body         BYTEA,
    response_body_size    INT,
    response_content_type TEXT,
    start_time            TIMESTAMP NOT NULL,
    end_time              TIMESTAMP,
    duration_ms           FLOAT,
    client_ip             TEXT,
    server_ip             TEXT,
    server_port           INT,
    is_https              BOOLEAN NOT NULL DEFAULT false,
    error_message         TEXT,
    error_type            TEXT,
    traffic_type          TEXT NOT NULL,
    created_at            TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- Extras (nullable): which listener saw it, the Claude Code session joining
-- both legs of one call, time to the response head, the client's HTTP
-- version, the model named in an LLM request body, and the token usage an
-- LLM response reports (JSON `usage`, or the `usage` of SSE events).
ALTER TABLE "CCProxy_HttpTraces"
    ADD COLUMN IF NOT EXISTS direction     TEXT,
    ADD COLUMN IF NOT EXISTS session_id    TEXT,
    ADD COLUMN IF NOT EXISTS ttfb_ms       FLOAT,
    ADD COLUMN IF NOT EXISTS http_version  TEXT,
    ADD COLUMN IF NOT EXISTS model         TEXT,
    ADD COLUMN IF NOT EXISTS input_tokens  INT,
    ADD COLUMN IF NOT EXISTS output_tokens INT;

CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_start_time_idx"   ON "CCProxy_HttpTraces" (start_time);
CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_host_idx"         ON "CCProxy_HttpTraces" (host);
CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_traffic_type_idx" ON "CCProxy_HttpTraces" (traffic_type);
CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_created_at_idx"   ON "CCProxy_HttpTraces" (created_at);
CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_status_code_idx"  ON "CCProxy_HttpTraces" (status_code);

-- Bodies and headers are TOASTed; lz4 (PostgreSQL 14+, when built with it)
-- costs a fraction of the CPU of the default pglz. Other servers keep pglz.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE "CCProxy_HttpTraces"
        ALTER COLUMN request_body     SET COMPRESSION lz4,
        ALTER COLUMN response_body    SET COMPRESSION lz4,
        ALTER COLUMN request_headers  SET COMPRESSION lz4,
        ALTER COLUMN response_headers SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'keeping the default TOAST compression: %', SQLERRM;
END
$$;
