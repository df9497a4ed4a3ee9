-- A task that failed before all its node tasks existed keeps its error here (JSON).
ALTER TABLE tasks ADD COLUMN error TEXT NOT NULL DEFAULT '';
