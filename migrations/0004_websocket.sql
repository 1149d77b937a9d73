-- WebSocket flows: the handshake is the row (status 101); its messages, both
-- directions in order, are a JSONB array in ws_messages (NULL for every other
-- flow). Each element: {"from": "client"|"server", "t_ms": <ms since the flow
-- started>, "opcode": "text"|"binary"|"close"|"ping"|"pong", "size": <full
-- payload bytes>, and "text" (text messages) or "base64" (the others): the
-- first max_body_size bytes of the payload, unmasked; "compressed": true when
-- sent with permessage-deflate}. request_body_size / response_body_size hold
-- the bytes relayed client→server / server→client after the handshake.
ALTER TABLE "CCProxy_HttpTraces"
    ADD COLUMN IF NOT EXISTS ws_messages JSONB;
