-- jilo schema 8: credit lots. Each grant is a lot that may expire; a hold draws from lots
-- (its parts), and accounts count what expired: granted = available + held + spent + expired.
ALTER TABLE jilo_accounts ADD COLUMN expired BIGINT NOT NULL DEFAULT 0 CHECK (expired >= 0);
ALTER TABLE jilo_accounts DROP CONSTRAINT jilo_accounts_check;
ALTER TABLE jilo_accounts ADD CONSTRAINT jilo_accounts_sum
    CHECK (granted = available + held + spent + expired);

ALTER TABLE jilo_ledger DROP CONSTRAINT jilo_ledger_kind_check;
ALTER TABLE jilo_ledger ADD CONSTRAINT jilo_ledger_kind_check
    CHECK (kind IN ('grant', 'hold', 'settle', 'refund', 'expire', 'lapse'));

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
