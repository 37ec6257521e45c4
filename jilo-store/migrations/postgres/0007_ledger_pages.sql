-- jilo schema 7: history pages filtered by kind read by index too (an unfiltered page reads
-- jilo_ledger_user (user_id, seq) backwards).
CREATE INDEX jilo_ledger_user_kind ON jilo_ledger (user_id, kind, seq);
