//! The direction of imports between the top modules of `src/`, held against a table: a new edge,
//! and so a new cycle, fails here until it is argued into the table. Reads the source text: every
//! `crate::<module>` path outside comments (in `use` lines, grouped `use crate::{…}` and paths in
//! code) and the external crates that some modules must not use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top module → the top modules it may import. A module missing here may import nothing.
const ALLOWED: &[(&str, &[&str])] = &[
    // Bottom: value types and pure cores.
    ("config", &["naming"]),
    ("naming", &[]),
    ("link", &[]),
    // The libsrt binding (FFI, RAII sockets) the SRT input and output share.
    ("srt", &[]),
    ("timecode", &["config"]),
    ("telemetry", &[]),
    // Destinations read their declaration (`config::delivery`).
    ("delivery", &["config"]),
    // Copy records and the `[storages]` section: the bytes here, the rows in the catalog.
    ("storage", &["catalog", "config"]),
    // Playout: the contract and the pure schedule core; the service keeps channels, rundowns
    // and as-run in the catalog (`catalog`, `config`, `timecode`; `naming`: its tests open a
    // catalog, which takes a house-ID template); the channel engine runs media (`av`), feeds the
    // TS sinks (`output`, `link`) and measures items' loudness (`qc`).
    (
        "playout",
        &[
            "av", "catalog", "config", "link", "naming", "output", "qc", "timecode",
        ],
    ),
    // The operator panel: embedded assets only; it reaches the appliance through `/v1`.
    ("web", &[]),
    // The engine.
    ("av", &["config"]),
    // Sinks and packages, below the pipeline.
    ("output", &["av", "link", "srt"]),
    // Domain.
    ("qc", &["av"]),
    ("profile", &["av", "config", "output", "qc"]),
    (
        "pipeline",
        // `link`: live pipelines deliver their TS to the transports' chunk sinks.
        &[
            "av", "config", "link", "output", "profile", "qc", "timecode",
        ],
    ),
    ("catalog", &["config", "naming", "timecode"]),
    ("ingest", &["av", "catalog", "link", "srt"]),
    // The stream hub (`link` only) and the live service over it: it starts the transports by
    // kind (`ingest`, `output`), stores sources and outputs and puts events on the change feed
    // (`catalog`), reads the declared ones (`config`) and asks the engine whether SDI capture
    // exists (`av`).
    (
        "hub",
        &["av", "catalog", "config", "ingest", "link", "output", "srt"],
    ),
    (
        "jobs",
        &[
            "av", "catalog", "config", "delivery", "ingest", "profile", "qc", "storage", "pipeline",
        ],
    ),
    // The faces and the composition root.
    (
        "api",
        &[
            "av", "catalog", "config", "hub", "ingest", "jobs", "profile", "storage",
            // The operator panel is mounted at `/` (and names the header its uploads carry).
            "web", // Channels, rundowns, EPG and as-run (`api::playout`).
            "playout",
            // Pull URLs are signed and manifests rendered with the delivery's pure parts.
            "delivery",
        ],
    ),
    (
        "app",
        &[
            "api", "catalog", "config", "hub", "ingest", "jobs", "naming", "profile",
            // Storages: built here, their periodic audit, policies and health started here.
            "storage",
            // The live engine behind transcoding outputs (`app::live_engine`).
            "av", "link", "pipeline",
            // The playout service (`PlayoutService::open`) and its channel engine, which starts
            // the channels' transports (`app::playout_engine`: `output`, `srt`).
            "playout", "output", "srt",
        ],
    ),
    (
        "cli",
        &[
            "api",
            "app",
            "av",
            "config",
            "hub",
            "jobs",
            "profile",
            "qc",
            "telemetry",
            "pipeline",
        ],
    ),
];

/// Modules that nothing of the domain may import.
const FACES: &[&str] = &["api", "app", "cli"];
/// The value types and pure cores: they import nothing of the domain.
const BOTTOM: &[&str] = &["config", "naming", "timecode", "link"];
/// External crates a module must not use (runtime, SQL, libav), with why.
const BANNED_CRATES: &[(&str, &[&str])] = &[
    ("av", &["tokio", "sqlx"]),
    ("delivery", &["tokio", "sqlx", "ffmpeg_next"]),
    ("storage", &["sqlx", "ffmpeg_next"]),
    ("config", &["tokio", "sqlx", "ffmpeg_next"]),
    ("naming", &["tokio", "sqlx", "ffmpeg_next"]),
    ("timecode", &["tokio", "sqlx", "ffmpeg_next"]),
    ("link", &["tokio", "sqlx", "ffmpeg_next"]),
    ("srt", &["tokio", "sqlx", "ffmpeg_next"]),
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src readable") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/av/engine.rs` → `av`; `src/timecode.rs` → `timecode`; `src/lib.rs` → `lib`.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The code of a file without its comments (line comments and doc comments), so that prose
/// naming a module is no import.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let mut l = line;
        if in_block {
            match l.find("*/") {
                Some(i) => {
                    l = &l[i + 2..];
                    in_block = false;
                }
                None => continue,
            }
        }
        if let Some(i) = l.find("/*") {
            in_block = !l[i..].contains("*/");
            l = &l[..i];
        }
        // A `//` inside a string literal (a URL) cuts the line short: harmless here, as it can
        // only hide text, and paths in strings are no imports.
        if let Some(i) = l.find("//") {
            l = &l[..i];
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top modules named after `crate::` in `code`, including each member of a group
/// (`use crate::{av::probe, config::Rate}`).
fn crate_edges(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue; // `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                let name: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
            continue;
        }
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Whether `code` uses the external crate `name` (`use name::…`, `name::path`).
fn uses_crate(code: &str, name: &str) -> bool {
    let pat = format!("{name}::");
    code.match_indices(&pat).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        !before.is_some_and(|c| is_ident(c) || c == ':')
    })
}

/// Every file's top module and the top modules it imports.
fn edges() -> (BTreeSet<String>, Vec<(String, String, PathBuf)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    let mut found = Vec::new();
    for f in &files {
        let from = top_module(&src, f);
        modules.insert(from.clone());
        let code = code_of(&std::fs::read_to_string(f).expect("readable"));
        for to in crate_edges(&code) {
            if to != from {
                found.push((from.clone(), to, f.clone()));
            }
        }
    }
    (modules, found)
}

#[test]
fn imports_between_top_modules_follow_the_table() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let (modules, found) = edges();
    let mut wrong = Vec::new();
    for (from, to, file) in &found {
        if from == "lib" || from == "main" {
            continue; // the module list, and the binary over the library
        }
        if !allowed
            .get(from.as_str())
            .is_some_and(|a| a.contains(&to.as_str()))
        {
            wrong.push(format!("{} -> {to}  ({})", from, file.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports not in the table of tests/layout.rs (move the shared type down, or argue the \
         edge into the table):\n{}",
        wrong.join("\n")
    );
    // Every top module is in the table, so a new one is placed on purpose.
    let missing: Vec<&String> = modules
        .iter()
        .filter(|m| !matches!(m.as_str(), "lib" | "main") && !allowed.contains_key(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "top modules not in the table: {missing:?}"
    );
}

#[test]
fn the_table_itself_keeps_the_rules_and_has_no_cycle() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (from, tos) in &allowed {
        for to in tos.iter() {
            if !FACES.contains(from) {
                assert!(!FACES.contains(to), "{from} may not import the face {to}");
            }
            if BOTTOM.contains(from) {
                assert!(
                    BOTTOM.contains(to),
                    "{from} is a value core: it may not import {to}"
                );
            }
            if *from == "av" {
                assert!(
                    !matches!(*to, "catalog" | "jobs" | "api" | "app" | "cli"),
                    "av may not import {to}"
                );
            }
        }
    }
    // No cycle: repeatedly take out the modules that import nothing left.
    let mut left: BTreeMap<&str, BTreeSet<&str>> = allowed
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect()))
        .collect();
    while !left.is_empty() {
        let free: Vec<&str> = left
            .iter()
            .filter(|(_, v)| v.iter().all(|t| !left.contains_key(t)))
            .map(|(k, _)| *k)
            .collect();
        assert!(
            !free.is_empty(),
            "the table has a cycle among {:?}",
            left.keys()
        );
        for k in free {
            left.remove(k);
        }
    }
}

#[test]
fn the_engine_and_the_cores_use_no_runtime_sql_or_libav_they_must_not() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let m = top_module(&src, f);
        let Some((_, banned)) = BANNED_CRATES.iter().find(|(b, _)| *b == m) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(f).expect("readable"));
        for c in banned.iter().filter(|c| uses_crate(&code, c)) {
            wrong.push(format!("{m} uses {c} ({})", f.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_top_module_says_what_it_owns_and_what_it_must_not_import() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for (m, _) in ALLOWED {
        let file = [src.join(m).join("mod.rs"), src.join(format!("{m}.rs"))]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no file for module {m}"));
        let text = std::fs::read_to_string(&file).expect("readable");
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        if doc.is_empty() || !doc.to_lowercase().contains("import") {
            missing.push(file.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "a top module's `//!` must say what it owns and what it must not import: {missing:?}"
    );
}

#[test]
fn the_reader_sees_grouped_and_inline_paths_but_not_comments() {
    let code = code_of(
        "use crate::{av::probe, config::{Rate, Bitrate}};\n\
         // crate::api in a comment\n\
         /* crate::jobs\n in a block */\n\
         fn f() { crate::qc::check(); let x = mycrate::y; }\n",
    );
    let e: Vec<String> = crate_edges(&code).into_iter().collect();
    assert_eq!(e, ["av", "config", "qc"]);
    assert!(uses_crate("use tokio::sync;", "tokio"));
    assert!(!uses_crate("use crate::x::tokio::y;", "tokio"));
}
