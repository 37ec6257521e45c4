-- jilo schema 1 (SQLite): the credit ledger and the job store.
CREATE TABLE jilo_accounts (
    user_id   TEXT PRIMARY KEY,
    available BIGINT NOT NULL CHECK (available >= 0),
    held      BIGINT NOT NULL CHECK (held >= 0),
    spent     BIGINT NOT NULL CHECK (spent >= 0),
    granted   BIGINT NOT NULL CHECK (granted >= 0),
    CHECK (granted = available + held + spent)
);

CREATE TABLE jilo_grants (
    grant_key TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    credits   BIGINT NOT NULL CHECK (credits > 0),
    reason    TEXT NOT NULL,
    at_ms     BIGINT NOT NULL
);

CREATE TABLE jilo_holds (
    job_id     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES jilo_accounts (user_id),
    credits    BIGINT NOT NULL CHECK (credits > 0),
    state      TEXT NOT NULL CHECK (state IN ('held', 'settled', 'refunded')),
    utc_day    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    ended_ms   BIGINT
);
CREATE INDEX jilo_holds_day ON jilo_holds (utc_day) WHERE state <> 'refunded';
CREATE INDEX jilo_holds_user ON jilo_holds (user_id) WHERE state = 'held';

CREATE TABLE jilo_ledger (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('grant', 'hold', 'settle', 'refund')),
    job_id    TEXT,
    grant_key TEXT,
    reason    TEXT,
    credits   BIGINT NOT NULL CHECK (credits > 0),
    at_ms     BIGINT NOT NULL
);
CREATE INDEX jilo_ledger_user ON jilo_ledger (user_id, seq);

CREATE TABLE jilo_jobs (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    state               TEXT NOT NULL,
    version             BIGINT NOT NULL,
    provider            TEXT,
    provider_request_id TEXT,
    created_ms          BIGINT NOT NULL,
    deadline_ms         BIGINT NOT NULL,
    next_check_ms       BIGINT,
    lease_owner         TEXT,
    lease_until_ms      BIGINT,
    doc                 TEXT NOT NULL
);
CREATE UNIQUE INDEX jilo_jobs_request ON jilo_jobs (provider, provider_request_id)
    WHERE provider_request_id IS NOT NULL;
CREATE INDEX jilo_jobs_user ON jilo_jobs (user_id, created_ms DESC, id DESC);
CREATE INDEX jilo_jobs_due ON jilo_jobs (next_check_ms)
    WHERE state IN ('queued', 'submitted', 'running', 'storing');
CREATE INDEX jilo_jobs_deadline ON jilo_jobs (deadline_ms)
    WHERE state IN ('queued', 'submitted', 'running');

CREATE TABLE jilo_deliveries (
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);
