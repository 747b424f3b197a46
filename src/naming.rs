//! House IDs from a naming template such as `{channel}-{yyyy}-{seq:06}`. Pure: the date and the
//! sequence number are given by the caller (the catalog owns the counter), so IDs are tested
//! without a clock or a database.
//! Imports nothing of the crate: a pure core that `config` (to validate the template) and
//! `catalog` (to make IDs) both use.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Channel,
    Year,
    Month,
    Day,
    Seq(usize),
}

/// A parsed, valid template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("naming template {template:?}: {why}")]
pub struct TemplateError {
    pub template: String,
    pub why: String,
}

impl Template {
    /// Parses `{channel}`, `{yyyy}`, `{mm}`, `{dd}`, `{seq}` / `{seq:N}` (zero-padded to N) and
    /// literal text; a template without `{seq}` cannot give unique IDs and is refused.
    pub fn parse(template: &str) -> Result<Template, TemplateError> {
        let err = |why: String| TemplateError {
            template: template.to_string(),
            why,
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            if rest.as_bytes()[i] == b'}' {
                return Err(err("a closing } without an opening {".into()));
            }
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 1..];
            let j = after
                .find('}')
                .ok_or_else(|| err("an opening { without a closing }".into()))?;
            let field = &after[..j];
            parts.push(match field {
                "channel" => Part::Channel,
                "yyyy" => Part::Year,
                "mm" => Part::Month,
                "dd" => Part::Day,
                "seq" => Part::Seq(1),
                f => match f.strip_prefix("seq:") {
                    Some(w) => {
                        let w: usize = w
                            .parse()
                            .map_err(|_| err(format!("{{{f}}}: the width must be a number")))?;
                        if !(1..=12).contains(&w) {
                            return Err(err(format!("{{{f}}}: the width must be 1 to 12")));
                        }
                        Part::Seq(w)
                    }
                    None => {
                        return Err(err(format!(
                            "{{{f}}} is not a field (channel, yyyy, mm, dd, seq)"
                        )))
                    }
                },
            });
            rest = &after[j + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Seq(_))) {
            return Err(err("needs {seq} so that house IDs are unique".into()));
        }
        Ok(Template { parts })
    }

    /// The house ID for a channel, a date and a sequence number.
    pub fn render(&self, channel: &str, (year, month, day): (i32, u32, u32), seq: u64) -> String {
        let mut out = String::new();
        for p in &self.parts {
            let _ = match p {
                Part::Text(t) => write!(out, "{t}"),
                Part::Channel => write!(out, "{channel}"),
                Part::Year => write!(out, "{year:04}"),
                Part::Month => write!(out, "{month:02}"),
                Part::Day => write!(out, "{day:02}"),
                Part::Seq(w) => write!(out, "{seq:0w$}"),
            };
        }
        out
    }

    /// Whether the sequence restarts each year (the template carries the year).
    pub fn per_year(&self) -> bool {
        self.parts.contains(&Part::Year)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_house_ids() {
        let t = Template::parse("{channel}-{yyyy}-{seq:06}").unwrap();
        assert_eq!(t.render("ANT", (2026, 11, 29), 42), "ANT-2026-000042");
        assert_eq!(
            t.render("ANT", (2026, 11, 29), 1_234_567),
            "ANT-2026-1234567"
        );
        assert!(t.per_year());
        let t = Template::parse("PRG/{yyyy}{mm}{dd}/{seq}").unwrap();
        assert_eq!(t.render("X", (2027, 1, 5), 7), "PRG/20270105/7");
        assert!(!Template::parse("{channel}{seq:3}").unwrap().per_year());
    }

    #[test]
    fn refuses_what_cannot_name_uniquely() {
        for (t, why) in [
            ("{channel}-{yyyy}", "{seq}"),
            ("{channel}-{year}-{seq}", "{year}"),
            ("{channel-{seq}", "is not a field"),
            ("{seq:0}", "1 to 12"),
            ("{seq:x}", "number"),
            ("A}{seq}", "closing"),
            ("{seq", "closing }"),
        ] {
            let e = Template::parse(t).unwrap_err().to_string();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
