-- Budgets: a monthly amount over a scope (spend filters, as an analysis
-- takes them; none is the whole organisation) with thresholds, as
-- percentages of the amount, on actual spend and on the month-end
-- forecast. Crossings are alerts (kinds budget_actual, budget_forecast),
-- whose scope names the budget, the month and the threshold, so a new
-- month starts over.
CREATE TABLE budgets (
    org_id               TEXT    NOT NULL REFERENCES organisations (org_id),
    budget_id            TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    amount               REAL  NOT NULL,
    metric               TEXT    NOT NULL,
    -- JSON arrays: filter texts, and percentages.
    filters              TEXT    NOT NULL,
    actual_thresholds    TEXT    NOT NULL,
    forecast_thresholds  TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    created_by           TEXT    NOT NULL,
    updated_at           INTEGER NOT NULL,
    deleted_at           INTEGER,
    PRIMARY KEY (org_id, budget_id)
);
CREATE INDEX budgets_live ON budgets (org_id, name) WHERE deleted_at IS NULL;
