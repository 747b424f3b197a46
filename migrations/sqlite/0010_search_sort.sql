-- Sorting search results by title, date, duration and last change, each walked in index order
-- (with the id as the tie-break that keyset paging needs). An asset's duration is the longest
-- of its files', kept up to date by triggers so that no code path can forget it.
ALTER TABLE assets ADD COLUMN duration_s REAL NOT NULL DEFAULT 0;
UPDATE assets SET duration_s = COALESCE(
    (SELECT MAX(f.duration_s) FROM files f WHERE f.asset_id = assets.id), 0);

CREATE TRIGGER files_duration_insert AFTER INSERT ON files BEGIN
    UPDATE assets SET duration_s = NEW.duration_s
     WHERE id = NEW.asset_id AND duration_s < NEW.duration_s;
END;
CREATE TRIGGER files_duration_delete AFTER DELETE ON files BEGIN
    UPDATE assets SET duration_s = COALESCE(
        (SELECT MAX(f.duration_s) FROM files f WHERE f.asset_id = OLD.asset_id), 0)
     WHERE id = OLD.asset_id;
END;

CREATE INDEX assets_sort_title ON assets(lower(title), id);
CREATE INDEX assets_sort_date ON assets(date, id);
CREATE INDEX assets_sort_duration ON assets(duration_s, id);
CREATE INDEX assets_sort_updated ON assets(updated_ms, id);
