-- The log, the streams and the single row that orders appends.
-- Statements run with search_path set to the store's schema.

-- head is the log's one ordering row: the last position given out and the
-- time recorded with it. Every append and delete updates it in its own
-- transaction, after taking the store's append lock, so positions are
-- given out in commit order and a rolled-back transaction gives its
-- positions back (no gaps).
CREATE TABLE head (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    last        bigint NOT NULL CHECK (last >= 0),
    recorded_at timestamptz NOT NULL
);
INSERT INTO head (id, last, recorded_at) VALUES (true, 0, '-infinity');

-- streams holds each stream's last version, the version its last delete
-- hid, and the positions of its first and last readable events (0 when
-- it has none). Names sort byte-wise, as the contract lists them.
CREATE TABLE streams (
    name      text COLLATE "C" PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 0),
    deleted   bigint NOT NULL CHECK (deleted >= 0 AND deleted <= version),
    first_pos bigint NOT NULL,
    last_pos  bigint NOT NULL
);

-- events is the whole log. kind 0 is an event, kind 1 the record of a
-- soft delete (it carries the stream's version at the delete).
-- batch_first and batch_last bound the append the event came in, which
-- tells a retry of a whole batch from a retry of part of one.
-- occurred_at is Unix nanoseconds (timestamptz keeps microseconds only).
CREATE TABLE events (
    position       bigint PRIMARY KEY CHECK (position > 0),
    stream         text COLLATE "C" NOT NULL,
    version        bigint NOT NULL CHECK (version > 0),
    kind           smallint NOT NULL CHECK (kind IN (0, 1)),
    event_id       uuid NOT NULL,
    generated      boolean NOT NULL,
    type           text NOT NULL,
    schema_version integer NOT NULL,
    content_type   text NOT NULL,
    data           bytea NOT NULL,
    metadata       jsonb,
    occurred_at    bigint,
    recorded_at    timestamptz NOT NULL,
    batch_first    bigint NOT NULL,
    batch_last     bigint NOT NULL,
    CHECK (batch_first <= position AND position <= batch_last)
);

-- An event id is recorded once: what idempotent retries rest on.
CREATE UNIQUE INDEX events_event_id ON events (event_id);
-- A stream's version is taken once: the expected-version check's
-- backstop, whatever the code above it does.
CREATE UNIQUE INDEX events_stream_version ON events (stream, version) WHERE kind = 0;
-- Reads by time (ReadAll and Subscribe with FromTime).
CREATE INDEX events_recorded_at ON events (recorded_at);
