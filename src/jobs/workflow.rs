//! Workflows (`firmware-config/workflows/*.toml`): a trigger (a watch folder, an API call, a
//! schedule over the assets a query selects) and steps (QC, transcode to profiles, verify,
//! deliver, notify, purge) with conditions on earlier results. Pure: parsing, validation and
//! choosing the next step; the supervisor runs them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::qc::QcRules;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct WorkflowError {
    pub file: String,
    pub why: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub trigger: Trigger,
    /// Kind of the assets it makes.
    #[serde(default = "clip")]
    pub asset_kind: String,
    #[serde(default)]
    pub qc: QcRules,
    #[serde(default)]
    pub steps: Vec<Step>,
}

fn clip() -> String {
    "clip".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Trigger {
    /// A watch folder (relative paths are under the data directory); none = API calls only.
    pub watch: Option<PathBuf>,
    /// A file is taken once its size and modification time have not changed for this long.
    pub stable_s: f64,
    /// How often the folder is scanned (works on network shares where no events come).
    pub poll_s: f64,
    /// After ingest: `move` the source to `done/` (or `failed/`) beside it, or `leave` it.
    pub after: After,
    /// Runs the steps on the assets `select` finds: `every 15m`, or a cron line (`0 2 * * *`:
    /// minute hour day-of-month month day-of-week, UTC).
    pub schedule: Option<String>,
    /// The assets a scheduled run works on.
    pub select: Select,
}

/// Which assets a scheduled run takes (all given conditions hold).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Select {
    /// Search words, as `GET /v1/search?q=`.
    pub q: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub tag: Option<String>,
    pub collection: Option<i64>,
    /// Created at least this many days ago (retention).
    pub older_than_days: Option<f64>,
    /// At most this many assets per run.
    pub limit: usize,
}

impl Default for Select {
    fn default() -> Self {
        Select {
            q: None,
            status: None,
            kind: None,
            tag: None,
            collection: None,
            older_than_days: None,
            limit: 1000,
        }
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            watch: None,
            stable_s: 5.0,
            poll_s: 1.0,
            after: After::Move,
            schedule: None,
            select: Select::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum After {
    Move,
    Leave,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `qc`, `transcode`, `verify` (fixity: every file of the asset hashed again against the
    /// catalog), `deliver`, `notify` or `purge` (the asset and the media the appliance stored
    /// for it; retention).
    pub kind: String,
    /// Transcode: the profiles, from one decode each.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Deliver: the folder renditions are copied to.
    #[serde(default)]
    pub to: Option<PathBuf>,
    /// Deliver: a declared destination (`[[delivery.destinations]]`, not a pull one) the
    /// renditions go to, named, verified, with its manifests and recorded on the asset, as
    /// through the API. Instead of `to`.
    #[serde(default)]
    pub destination: Option<String>,
    /// Notify: the webhook (`http://…`) the workflow's progress is POSTed to as JSON.
    #[serde(default)]
    pub url: Option<String>,
    /// `always` (default), `qc.pass`, `qc.fail`, `source.interlaced`, `source.progressive`,
    /// `source.hd`, `source.sd`; several joined by ` and `.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub priority: i64,
    /// A job of this step running longer than this is stopped and fails (seconds; none = the
    /// appliance's `jobs.job_timeout_s`).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

const CONDITIONS: &[&str] = &[
    "always",
    "qc.pass",
    "qc.fail",
    "source.interlaced",
    "source.progressive",
    "source.hd",
    "source.sd",
];

/// Whether a step's condition holds: `ctx` carries `qc.verdict` and `source` (the probe).
pub fn holds(when: Option<&str>, ctx: &Value) -> bool {
    let Some(w) = when else { return true };
    w.split(" and ").all(|c| {
        let v = &ctx["source"]["video"][0];
        match c.trim() {
            "always" => true,
            "qc.pass" => matches!(ctx["qc"]["verdict"].as_str(), Some("pass") | Some("warn")),
            "qc.fail" => ctx["qc"]["verdict"].as_str() == Some("fail"),
            "source.interlaced" => matches!(v["field_order"].as_str(), Some("tff") | Some("bff")),
            "source.progressive" => !matches!(v["field_order"].as_str(), Some("tff") | Some("bff")),
            "source.hd" => v["height"].as_u64().is_some_and(|h| h >= 720),
            "source.sd" => v["height"].as_u64().is_some_and(|h| h < 720),
            _ => false,
        }
    })
}

/// Each `deliver` step naming a destination that `declared` (the names of the delivery
/// destinations, pull ones excluded) does not hold, said in words.
pub fn undeclared_destinations(workflows: &[Workflow], declared: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for w in workflows {
        for (i, s) in w.steps.iter().enumerate() {
            if let Some(d) = s.destination.as_ref().filter(|d| !declared.contains(d)) {
                out.push(format!(
                    "workflow {:?}: step {}: no delivery destination {d:?} is declared (a \
                     folder, sftp or s3 one in [[delivery.destinations]])",
                    w.name,
                    i + 1
                ));
            }
        }
    }
    out
}

impl Workflow {
    /// The first step at or after `from` whose condition holds.
    pub fn next_step(&self, from: usize, ctx: &Value) -> Option<(usize, &Step)> {
        self.steps
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, s)| holds(s.when.as_deref(), ctx))
    }

    /// Every mistake in this workflow, read from `file`.
    fn problems(&self, file: &str, profiles: &[String]) -> Vec<WorkflowError> {
        let mut errs = Vec::new();
        let mut bad = |why: String| {
            errs.push(WorkflowError {
                file: file.to_string(),
                why,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bad(format!("name {:?}: letters, digits, - and _", self.name));
        }
        if !crate::catalog::assets::KINDS.contains(&self.asset_kind.as_str()) {
            bad(format!(
                "asset_kind {:?} is not an asset kind",
                self.asset_kind
            ));
        }
        if !(self.trigger.stable_s >= 0.0 && self.trigger.poll_s > 0.0) {
            bad("trigger: stable_s must be >= 0 and poll_s > 0".into());
        }
        const EXPECT: &[&str] = &[
            "width",
            "height",
            "frame_rate",
            "field_order",
            "aspect",
            "audio_channels",
            "audio_layout",
            "audio_tracks",
            "audio_channels_total",
        ];
        if let Some(k) = self
            .qc
            .expect
            .keys()
            .find(|k| !EXPECT.contains(&k.as_str()))
        {
            bad(format!(
                "qc.expect: {k:?} is not one of {}",
                EXPECT.join(", ")
            ));
        }
        if let Some(s) = &self.trigger.schedule {
            match super::trigger::Schedule::parse(s) {
                Err(e) => bad(format!("trigger.schedule: {e}")),
                Ok(sched) if sched.next_after(0).is_none() => {
                    bad(format!("trigger.schedule: {s:?} never fires"))
                }
                Ok(_) => {}
            }
            if self.steps.is_empty() {
                bad("trigger.schedule: a scheduled workflow needs steps".into());
            }
            let sel = &self.trigger.select;
            if sel.limit == 0 || sel.older_than_days.is_some_and(|d| d.is_nan() || d < 0.0) {
                bad("trigger.select: limit must be at least 1 and older_than_days >= 0".into());
            }
            if let Some(st) = &sel.status {
                if !crate::catalog::assets::STATUSES.contains(&st.as_str()) {
                    bad(format!("trigger.select: status {st:?} is not a status"));
                }
            }
        }
        self.step_problems(profiles, &mut bad);
        errs
    }

    /// Each step: a kind it can run, what that kind needs, and a condition it can read.
    fn step_problems(&self, profiles: &[String], bad: &mut impl FnMut(String)) {
        for (i, s) in self.steps.iter().enumerate() {
            let at = format!("steps[{i}]");
            match s.kind.as_str() {
                "qc" => {}
                "transcode" => {
                    if s.profiles.is_empty() {
                        bad(format!("{at}: a transcode step names its profiles"));
                    }
                    if let Some(p) = s.profiles.iter().find(|p| !profiles.contains(p)) {
                        bad(format!("{at}: no profile {p:?}"));
                    }
                }
                "deliver" => match (&s.to, &s.destination) {
                    (Some(_), Some(_)) => bad(format!(
                        "{at}: deliver takes `to` (a folder) or `destination` (a declared \
                         destination), not both"
                    )),
                    (None, Some(d)) if d.is_empty() => {
                        bad(format!("{at}: deliver: `destination` is empty"))
                    }
                    (None, Some(_)) => {}
                    (to, None) => {
                        if to.as_ref().is_none_or(|t| !t.is_absolute()) {
                            bad(format!(
                                "{at}: deliver needs `to`, an absolute folder, or \
                                 `destination`, a declared destination"
                            ));
                        }
                    }
                },
                "notify" => {
                    if s.url.as_deref().is_none_or(|u| !u.starts_with("http://")) {
                        bad(format!("{at}: notify needs `url`, an http:// webhook"));
                    }
                }
                "verify" => {}
                "purge" => {
                    if i + 1 != self.steps.len() {
                        bad(format!("{at}: purge is the last step"));
                    }
                }
                k => bad(format!(
                    "{at}: kind {k:?} is not qc, transcode, verify, deliver, notify or purge"
                )),
            }
            if let Some(w) = &s.when {
                for c in w.split(" and ") {
                    if !CONDITIONS.contains(&c.trim()) {
                        bad(format!(
                            "{at}: when {c:?} is not one of {}",
                            CONDITIONS.join(", ")
                        ));
                    }
                }
            }
        }
    }
}

const DEFAULT: &str = include_str!("../../firmware-config/workflows/default.toml");

/// The bundled workflows, then `dir/*.toml` (a file of the same name replaces a bundled one);
/// the first mistake found is the error ([`load_each`] gives them all).
pub fn load_all(dir: Option<&Path>, profiles: &[String]) -> Result<Vec<Workflow>, WorkflowError> {
    let (all, errs) = load_each(dir, profiles);
    match errs.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// A workflow file read: the workflow as taken, and every key its types refuse, each naming
/// its path (with a mistake, the workflow is what reads without those keys, if anything).
fn parse(file: &str, text: &str) -> (Option<Workflow>, Vec<WorkflowError>) {
    let bad = |why: String| WorkflowError {
        file: file.to_string(),
        why,
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => return (None, vec![bad(e.message().to_string())]),
    };
    // A name of its own lets each key be tried without the others.
    let mut fill = toml::Table::new();
    fill.insert("name".into(), toml::Value::String("workflow".into()));
    let refused = crate::config::refused::refused::<Workflow>(&table, &fill);
    let taken = toml::Value::Table(crate::config::refused::without(&table, &refused));
    let mut errs: Vec<WorkflowError> = refused
        .into_iter()
        .map(|r| bad(format!("{}: {}", r.path, r.why)))
        .collect();
    match taken.try_into::<Workflow>() {
        Ok(w) => (Some(w), errs),
        Err(e) => {
            if errs.is_empty() {
                errs.push(bad(e.message().to_string()));
            }
            (None, errs)
        }
    }
}

/// The workflows that load, and every mistake of those that do not, file by file.
pub fn load_each(dir: Option<&Path>, profiles: &[String]) -> (Vec<Workflow>, Vec<WorkflowError>) {
    let mut out: Vec<Workflow> = Vec::new();
    let mut errs = Vec::new();
    let mut sources = vec![("default.toml (bundled)".to_string(), DEFAULT.to_string())];
    if let Some(d) = dir {
        if let Ok(rd) = std::fs::read_dir(d) {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for f in files {
                match std::fs::read_to_string(&f) {
                    Ok(text) => sources.push((f.display().to_string(), text)),
                    Err(e) => errs.push(WorkflowError {
                        file: f.display().to_string(),
                        why: e.to_string(),
                    }),
                }
            }
        }
    }
    for (file, text) in sources {
        let (w, refused) = parse(&file, &text);
        let Some(w) = w else {
            errs.extend(refused);
            continue;
        };
        // What was taken is checked too: every mistake of the file at once.
        let wrong = w.problems(&file, profiles);
        if !refused.is_empty() || !wrong.is_empty() {
            errs.extend(refused);
            errs.extend(wrong);
            continue;
        }
        out.retain(|o| o.name != w.name);
        out.push(w);
    }
    let mut watched: Vec<&PathBuf> = out
        .iter()
        .filter_map(|w| w.trigger.watch.as_ref())
        .collect();
    watched.sort();
    if watched.windows(2).any(|p| p[0] == p[1]) {
        errs.push(WorkflowError {
            file: "workflows".into(),
            why: "two workflows watch the same folder".into(),
        });
    }
    (out, errs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profiles() -> Vec<String> {
        ["xdcam-hd422-1080i25", "proxy", "web-h264", "hls-ladder"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn bundled_default_loads() {
        let all = load_all(None, &profiles()).unwrap();
        let d = all.iter().find(|w| w.name == "default").unwrap();
        assert_eq!(d.trigger.watch.as_deref(), Some(Path::new("watch")));
        assert_eq!(d.steps[0].kind, "qc");
        assert!(d
            .steps
            .iter()
            .any(|s| s.profiles.contains(&"web-h264".to_string())));
    }

    #[test]
    fn conditions_route_steps() {
        let w: Workflow = toml::from_str(
            r#"
            name = "t"
            [[steps]]
            kind = "qc"
            [[steps]]
            kind = "transcode"
            profiles = ["hls-ladder"]
            when = "qc.pass and source.hd"
            [[steps]]
            kind = "transcode"
            profiles = ["proxy"]
            "#,
        )
        .unwrap();
        assert!(w.problems("t", &profiles()).is_empty());
        let hd_pass = json!({"qc": {"verdict": "pass"}, "source": {"video": [{"height": 1080, "field_order": "tff"}]}});
        let sd_fail = json!({"qc": {"verdict": "fail"}, "source": {"video": [{"height": 576}]}});
        assert_eq!(w.next_step(1, &hd_pass).unwrap().0, 1);
        assert_eq!(w.next_step(1, &sd_fail).unwrap().0, 2);
        assert!(w.next_step(3, &hd_pass).is_none());
        assert!(holds(Some("source.interlaced"), &hd_pass));
    }

    #[test]
    fn refuses_what_cannot_run() {
        for (t, why) in [
            (
                "name = \"x\"\n[[steps]]\nkind = \"transcode\"\nprofiles = [\"nope\"]",
                "no profile",
            ),
            ("name = \"x\"\n[[steps]]\nkind = \"dance\"", "kind"),
            (
                "name = \"x\"\n[[steps]]\nkind = \"qc\"\nwhen = \"qc.maybe\"",
                "when",
            ),
            ("name = \"x\"\n[[steps]]\nkind = \"deliver\"", "absolute"),
            ("name = \"x y\"", "name"),
        ] {
            let w: Workflow = toml::from_str(t).unwrap();
            let e = w.problems("f", &profiles());
            assert_eq!(e.len(), 1, "{t}: {e:?}");
            assert!(e[0].to_string().contains(why), "{t}: {e:?}");
        }
    }
}
