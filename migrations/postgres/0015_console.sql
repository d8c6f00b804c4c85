-- Console sessions (docs/contract.md §10): the SHA-256 of the cookie's value, never the value,
-- with the token that signed in, its role, the session's CSRF token and when it ends.
CREATE TABLE console_sessions (
    id_sha256 TEXT COLLATE "C" PRIMARY KEY,
    token_name TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    csrf TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
-- The subscriber page lists a subscriber's replies.
CREATE INDEX mo_messages_by_subscriber ON mo_messages (subscriber_id, received_at);
