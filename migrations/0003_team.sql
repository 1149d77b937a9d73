-- Many machines, one server: who captured each row. Rows written before this
-- migration keep NULL (they came from one machine; set them by hand if it
-- matters: UPDATE "CCProxy_HttpTraces" SET capture_host = '…' WHERE capture_host IS NULL).
--
-- The daily range partitioning by start_time is done after the SQL migrations
-- by the engine itself (src/store/partition.rs), in batches that survive an
-- interruption, because converting a big table is not one transaction's work.

ALTER TABLE "CCProxy_HttpTraces"
    ADD COLUMN IF NOT EXISTS capture_host TEXT,
    ADD COLUMN IF NOT EXISTS capture_user TEXT;

CREATE INDEX IF NOT EXISTS "CCProxy_HttpTraces_capture_host_idx" ON "CCProxy_HttpTraces" (capture_host);
