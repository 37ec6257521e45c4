-- jilo schema 6: channels users connected (tokens sealed by the host's key, opaque here) and
-- the durable publication record per job and channel (the upload session and confirmed bytes
-- as the upload goes, the lease of the process uploading, the video, its statistics).
CREATE TABLE jilo_channels (
    user_id           TEXT NOT NULL,
    channel_id        TEXT NOT NULL,
    channel_name      TEXT NOT NULL,
    access_token      TEXT NOT NULL,
    access_expires_ms BIGINT NOT NULL,
    refresh_token     TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    connected_ms      BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

CREATE TABLE jilo_publications (
    job_id         TEXT NOT NULL,
    channel_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('uploading', 'published', 'failed')),
    lease_token    TEXT,
    lease_until_ms BIGINT,
    stats_ms       BIGINT NOT NULL DEFAULT -1,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    doc            TEXT NOT NULL,
    PRIMARY KEY (job_id, channel_id)
);

CREATE INDEX jilo_publications_stalled ON jilo_publications (state, lease_until_ms);
CREATE INDEX jilo_publications_stats ON jilo_publications (state, stats_ms);
