//! Every key a TOML document's type refuses, not only the first: serde stops at the first
//! mistake of a document, so each key is tried on its own: alone where its table's keys are
//! all optional, else with the others of its table when they are taken without it; an array
//! of tables element by element. Each mistake comes back with its path.

use serde::de::DeserializeOwned;

/// A key the type refused: its path (`server.listen`, `live.sources[1]`) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub path: String,
    pub why: String,
}

/// Every key of `doc` that `T` refuses; empty when `T` takes `doc`. `fill` adds to any table
/// tried at the top what `T` requires of every document (e.g. a placeholder name), so that a
/// key can be tried without the others.
pub fn refused<T: DeserializeOwned>(doc: &toml::Table, fill: &toml::Table) -> Vec<Refused> {
    let fill = fill.clone();
    let try_top = move |v: toml::Value| -> Result<(), String> {
        let mut t = match v {
            toml::Value::Table(t) => t,
            other => return Err(format!("expected a table, found {}", other.type_str())),
        };
        for (k, x) in &fill {
            t.entry(k.clone()).or_insert_with(|| x.clone());
        }
        toml::Value::Table(t)
            .try_into::<T>()
            .map(drop)
            .map_err(|e| e.message().trim().to_string())
    };
    let mut out = Vec::new();
    walk(&try_top, &toml::Value::Table(doc.clone()), "", &mut out);
    out
}

/// The document without the keys of `refused` (array elements dropped), for the checks that
/// read the values that were taken.
pub fn without(doc: &toml::Table, refused: &[Refused]) -> toml::Table {
    let mut doc = toml::Value::Table(doc.clone());
    // Last first: an element dropped does not move those before it.
    for r in refused.iter().rev() {
        remove(&mut doc, &segments(&r.path));
    }
    match doc {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    }
}

type Try<'a> = dyn Fn(toml::Value) -> Result<(), String> + 'a;

fn walk(try_: &Try<'_>, v: &toml::Value, path: &str, out: &mut Vec<Refused>) {
    let Err(why) = try_(v.clone()) else { return };
    let before = out.len();
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        // Every key optional: each is tried alone.
        toml::Value::Table(t)
            if !t.is_empty() && try_(toml::Value::Table(toml::Table::new())).is_ok() =>
        {
            for (k, x) in t {
                let one = |y: toml::Value| {
                    let mut alone = toml::Table::new();
                    alone.insert(k.clone(), y);
                    try_(toml::Value::Table(alone))
                };
                walk(&one, x, &join(k), out);
            }
        }
        // Some key required: a key is at fault when the others are taken without it.
        toml::Value::Table(t) => {
            for (k, x) in t {
                let mut others = t.clone();
                others.remove(k);
                if try_(toml::Value::Table(others.clone())).is_err() {
                    continue;
                }
                let with = |y: toml::Value| {
                    let mut t = others.clone();
                    t.insert(k.clone(), y);
                    try_(toml::Value::Table(t))
                };
                walk(&with, x, &join(k), out);
            }
        }
        toml::Value::Array(a) if !a.is_empty() && a.iter().all(toml::Value::is_table) => {
            for (i, x) in a.iter().enumerate() {
                let one = |y: toml::Value| try_(toml::Value::Array(vec![y]));
                walk(&one, x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
    // Nothing is wrong alone: the keys are wrong together, said of the whole.
    if out.len() == before {
        out.push(Refused {
            path: if path.is_empty() {
                "(the whole file)".into()
            } else {
                path.to_string()
            },
            why,
        });
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        out.push(Seg::Key(key.to_string()));
        for i in rest.split('[') {
            if let Ok(n) = i.trim_end_matches(']').parse() {
                out.push(Seg::Index(n));
            }
        }
    }
    out
}

fn remove(v: &mut toml::Value, path: &[Seg]) {
    match (path, v) {
        ([Seg::Key(k)], toml::Value::Table(t)) => {
            t.remove(k);
        }
        ([Seg::Index(i)], toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        ([Seg::Key(k), rest @ ..], toml::Value::Table(t)) => {
            if let Some(x) = t.get_mut(k) {
                remove(x, rest);
            }
        }
        ([Seg::Index(i), rest @ ..], toml::Value::Array(a)) => {
            if let Some(x) = a.get_mut(*i) {
                remove(x, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Doc {
        a: Inner,
        items: Vec<Item>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        s: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn every_refused_key_is_named() {
        let doc: toml::Table = toml::from_str(
            "[a]\nn = \"x\"\ns = 3\nodd = 1\n[[items]]\nname = \"ok\"\n[[items]]\nn = 2\n\
             [[items]]\nname = \"b\"\nn = -1\n[[items]]\nname = 3\nn = -1\n[b]\n",
        )
        .unwrap();
        let r = refused::<Doc>(&doc, &toml::Table::new());
        let mut paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "a.n",
                "a.odd",
                "a.s",
                "b",
                "items[1]",
                "items[2].n",
                "items[3]"
            ],
            "{r:?}"
        );
        let item1 = r.iter().find(|r| r.path == "items[1]").unwrap();
        assert!(item1.why.contains("name"), "{r:?}");
        let rest = without(&doc, &r);
        let d: Doc = toml::Value::Table(rest).try_into().unwrap();
        assert_eq!(d.items.len(), 2);
        assert!(refused::<Doc>(&toml::Table::new(), &toml::Table::new()).is_empty());
    }
}
