-- jilo schema 2: every provider request a job has had, so a late webhook for an earlier
-- attempt still finds its job (and is absorbed) instead of looking unknown.
CREATE TABLE jilo_job_requests (
    provider   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    PRIMARY KEY (provider, request_id)
);

INSERT INTO jilo_job_requests (provider, request_id, job_id)
    SELECT provider, provider_request_id, id FROM jilo_jobs
    WHERE provider IS NOT NULL AND provider_request_id IS NOT NULL;
