-- Every word the full-text index holds (folded as its tokenizer folds them), so that a word
-- searched as a prefix becomes the whole words it starts (see src/catalog/terms.rs). Filled as
-- text is indexed; a catalog indexed before this table existed is filled at start.
CREATE TABLE search_terms (term TEXT PRIMARY KEY) WITHOUT ROWID;
