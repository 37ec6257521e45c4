-- jilo schema 3: alert throttling and provider cooling shared by every process on the store,
-- so one outage is one alert and every process routes around a provider out of funds.
CREATE TABLE jilo_alerts (
    subject TEXT PRIMARY KEY,
    last_ms BIGINT NOT NULL
);

CREATE TABLE jilo_provider_cooling (
    provider TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
