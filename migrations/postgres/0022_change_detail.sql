-- What a change-feed entry says beyond its op, as JSON text: a live output's switch (from, to,
-- reason), a source lost (why). Empty for the catalog's own changes.
ALTER TABLE changes ADD COLUMN detail TEXT;
