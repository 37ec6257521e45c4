-- jilo schema 4: discoveries' platform searches (kept for the cache window, so a repeat makes
-- no paid search) and the creative model's analyses, one per platform and video.
CREATE TABLE jilo_trend_searches (
    query_key  TEXT PRIMARY KEY,
    fetched_ms BIGINT NOT NULL,
    doc        TEXT NOT NULL
);

CREATE TABLE jilo_trend_analyses (
    platform    TEXT NOT NULL,
    video_id    TEXT NOT NULL,
    analyzed_ms BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (platform, video_id)
);
