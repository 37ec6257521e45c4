-- jilo schema 9: the paid source run of a search (an Apify actor run), claimed by one caller
-- across every process, its id kept before anyone waits on it, so a run is never paid twice.
CREATE TABLE jilo_source_runs (
    run_key  TEXT PRIMARY KEY,
    owner    TEXT NOT NULL,
    run_id   TEXT,
    until_ms BIGINT NOT NULL
);
