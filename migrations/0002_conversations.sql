-- Chat conversations kept by the host, and per-connection chat options.
-- Messages are stored as the user wrote them: redaction is applied to what
-- is sent, on every send, never to what is kept here.
CREATE TABLE conversations (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    title         TEXT NOT NULL,            -- the first user message, shortened
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX conversations_by_connection ON conversations (connection_id, updated_at);

CREATE TABLE conversation_messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,       -- 1, 2, ... in conversation order
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT NOT NULL,
    model           TEXT,                   -- assistant messages: the model that answered
    created_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE chat_options (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    redaction     INTEGER NOT NULL CHECK (redaction IN (0, 1)),
    system_prompt TEXT,                     -- first system message of every new conversation
    updated_at    TEXT NOT NULL
);
