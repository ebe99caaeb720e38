"""A schema-1 file for migration tests: the pool tables as the first release had them."""

from typing import Final

TO_SCHEMA_1: Final = """
CREATE TABLE queue_items (
    instance_id TEXT NOT NULL, event_id TEXT NOT NULL, neg_priority INTEGER NOT NULL,
    seq INTEGER NOT NULL, item TEXT NOT NULL, PRIMARY KEY (instance_id, event_id));
CREATE INDEX queue_order ON queue_items (instance_id, neg_priority, seq);
CREATE INDEX queue_age ON queue_items (instance_id, seq);
CREATE TABLE finished (
    instance_id TEXT NOT NULL, event_id TEXT NOT NULL, finished_at INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (instance_id, event_id));
CREATE INDEX finished_age ON finished (instance_id, finished_at);
INSERT INTO queue_items SELECT instance_id, event_id, neg_priority, seq, item
    FROM pool_events WHERE state = 0;
INSERT INTO finished SELECT instance_id, event_id, finished_at, record
    FROM pool_events WHERE state = 2;
DROP TABLE pool_events;
UPDATE schema_info SET value = 1 WHERE name = 'schema';
"""
"""Turns a file of this version into the schema-1 layout (pool events in two tables)."""
