-- groups_owner names the server that runs the consumer groups of this
-- store: the one holding the store's groups advisory lock (a session lock
-- on its own connection). The row only advertises where that server
-- answers; the lock decides. A reader trusts the row only while the
-- session whose pid it names holds the lock, so a row left by a server
-- that died names nobody. released is set by an owner that stopped
-- cleanly (its last commit written), so that the next one need not wait.
CREATE TABLE groups_owner (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    url      text NOT NULL,
    pid      integer NOT NULL,
    since    timestamptz NOT NULL,
    released boolean NOT NULL
);
