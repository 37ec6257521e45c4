-- jilo schema 5: reports read jobs by creation time across users.
CREATE INDEX jilo_jobs_created ON jilo_jobs (created_ms, id);
