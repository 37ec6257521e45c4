-- jilo schema 8: credit lots. Each grant is a lot that may expire; a hold draws from lots
-- (its parts), and accounts count what expired: granted = available + held + spent + expired.
-- SQLite cannot change a CHECK in place: accounts and the ledger are rebuilt. jilo_holds
-- refers to accounts, so it is rebuilt first pointing at the new accounts table (whose rename
-- then carries the reference along): no row ever refers to a dropped table.
CREATE TABLE jilo_accounts_v8 (
    user_id   TEXT PRIMARY KEY,
    available BIGINT NOT NULL CHECK (available >= 0),
    held      BIGINT NOT NULL CHECK (held >= 0),
    spent     BIGINT NOT NULL CHECK (spent >= 0),
    granted   BIGINT NOT NULL CHECK (granted >= 0),
    expired   BIGINT NOT NULL DEFAULT 0 CHECK (expired >= 0),
    CHECK (granted = available + held + spent + expired)
);
INSERT INTO jilo_accounts_v8 (user_id, available, held, spent, granted, expired)
SELECT user_id, available, held, spent, granted, 0 FROM jilo_accounts;

CREATE TABLE jilo_holds_v8 (
    job_id     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES jilo_accounts_v8 (user_id),
    credits    BIGINT NOT NULL CHECK (credits > 0),
    state      TEXT NOT NULL CHECK (state IN ('held', 'settled', 'refunded')),
    utc_day    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    ended_ms   BIGINT
);
INSERT INTO jilo_holds_v8 (job_id, user_id, credits, state, utc_day, created_ms, ended_ms)
SELECT job_id, user_id, credits, state, utc_day, created_ms, ended_ms FROM jilo_holds;
DROP TABLE jilo_holds;
DROP TABLE jilo_accounts;
ALTER TABLE jilo_accounts_v8 RENAME TO jilo_accounts;
ALTER TABLE jilo_holds_v8 RENAME TO jilo_holds;
CREATE INDEX jilo_holds_day ON jilo_holds (utc_day) WHERE state <> 'refunded';
CREATE INDEX jilo_holds_user ON jilo_holds (user_id) WHERE state = 'held';

CREATE TABLE jilo_ledger_v8 (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    kind      TEXT NOT NULL
              CHECK (kind IN ('grant', 'hold', 'settle', 'refund', 'expire', 'lapse')),
    job_id    TEXT,
    grant_key TEXT,
    reason    TEXT,
    credits   BIGINT NOT NULL CHECK (credits > 0),
    at_ms     BIGINT NOT NULL
);
INSERT INTO jilo_ledger_v8 (seq, user_id, kind, job_id, grant_key, reason, credits, at_ms)
SELECT seq, user_id, kind, job_id, grant_key, reason, credits, at_ms FROM jilo_ledger;
DROP TABLE jilo_ledger;
ALTER TABLE jilo_ledger_v8 RENAME TO jilo_ledger;
CREATE INDEX jilo_ledger_user ON jilo_ledger (user_id, seq);
CREATE INDEX jilo_ledger_user_kind ON jilo_ledger (user_id, kind, seq);

CREATE TABLE jilo_credit_lots (
    grant_key      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    granted        BIGINT NOT NULL CHECK (granted > 0),
    available      BIGINT NOT NULL CHECK (available >= 0),
    held           BIGINT NOT NULL CHECK (held >= 0),
    spent          BIGINT NOT NULL CHECK (spent >= 0),
    expired        BIGINT NOT NULL CHECK (expired >= 0),
    expires_ms     BIGINT,
    granted_ms     BIGINT NOT NULL,
    expiry_written BIGINT NOT NULL DEFAULT 0,
    CHECK (granted = available + held + spent + expired)
);
CREATE INDEX jilo_credit_lots_user ON jilo_credit_lots (user_id);
CREATE INDEX jilo_credit_lots_due ON jilo_credit_lots (expires_ms)
    WHERE expiry_written = 0 AND expires_ms IS NOT NULL;

CREATE TABLE jilo_hold_parts (
    job_id  TEXT NOT NULL,
    lot_key TEXT NOT NULL,
    credits BIGINT NOT NULL CHECK (credits > 0),
    PRIMARY KEY (job_id, lot_key)
);

-- What was granted before lots: one lasting lot per account, its holds (open and ended) drawn from it.
INSERT INTO jilo_credit_lots
    (grant_key, user_id, granted, available, held, spent, expired, expires_ms, granted_ms)
SELECT 'jilo:legacy:' || user_id, user_id, granted, available, held, spent, 0, NULL, 0
FROM jilo_accounts WHERE granted > 0;
INSERT INTO jilo_hold_parts (job_id, lot_key, credits)
SELECT job_id, 'jilo:legacy:' || user_id, credits FROM jilo_holds;
-- What a statement spent this period: the user's settles since the period began, by index
-- (not every settle the user ever made).
CREATE INDEX jilo_ledger_settled_at ON jilo_ledger (user_id, at_ms) WHERE kind = 'settle';
