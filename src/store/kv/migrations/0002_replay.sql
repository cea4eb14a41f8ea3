-- dkd schema 2 on PostgreSQL: the replay cache every instance shares. A MessageID answered by one
-- instance is refused by all until expires_at (unix seconds: its Timestamp's window); expired rows
-- are taken over by a new claim and deleted by the periodic prune.
CREATE TABLE dkd_replay (
    message_id text PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX dkd_replay_expires ON dkd_replay (expires_at);
