//! The playout service: channels (declared in antenne.toml or made over the API, kept in the
//! catalog and restored at start), their rundowns (validated, resolved into the plan the channel
//! engine reads, edited on air), the as-run log the engine's reports become, the periodic check
//! that validates items again before they air, and the seam to the channel engine
//! ([`ChannelControl`]). Time is the catalog's clock. Imports `catalog` and `config`; never `api`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::catalog::playout::AsRunRow;
use crate::catalog::{Catalog, CatalogError, Perms, Principal, Role};
use crate::config::playout::{Channel, Playout};

use super::plan::{Aired, Timeline};
use super::schedule::edit::{self, Edit};
use super::schedule::exchange::{self, AsRun, NowNext};
use super::schedule::validate::{self, Territory, Warning};
use super::schedule::{
    model, resolve, AssetInfo, FrameClock, Item, ItemType, Library, Plan, RightsWindow,
    ScheduleError, SharedPlan,
};

/// What the channel engine is handed to air a channel.
pub struct ChannelRun {
    pub id: i64,
    pub channel: Channel,
    pub clock: FrameClock,
    /// The plan, swapped on every schedule change; read it at each slot boundary.
    pub timeline: Arc<dyn Timeline>,
    /// Where to report each slot once it has left air (it becomes an as-run record).
    pub aired: mpsc::UnboundedSender<(i64, Aired)>,
    /// The filler's files (its house ids found in the catalog); empty: the generated slate.
    pub filler: Vec<PathBuf>,
    /// The logo's file (a path, or a house id found in the catalog).
    pub logo: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No channel engine is attached to the service.
    #[error("no channel engine is attached to this service: channels cannot be started, stopped or switched to slate")]
    Unavailable,
    #[error("channel engine: {0}")]
    Failed(String),
}

/// The channel engine as the service drives it.
pub trait ChannelControl: Send + Sync {
    fn start(&self, run: ChannelRun) -> Result<(), ControlError>;
    fn stop(&self, id: i64) -> Result<(), ControlError>;
    /// Emergency slate on (`true`) or back to the schedule.
    fn slate(&self, id: i64, on: bool) -> Result<(), ControlError>;
    fn on_air(&self, id: i64) -> bool;
}

/// The control used until an engine is attached: every command is refused.
pub struct NoEngine;

impl ChannelControl for NoEngine {
    fn start(&self, _: ChannelRun) -> Result<(), ControlError> {
        Err(ControlError::Unavailable)
    }
    fn stop(&self, _: i64) -> Result<(), ControlError> {
        Err(ControlError::Unavailable)
    }
    fn slate(&self, _: i64, _: bool) -> Result<(), ControlError> {
        Err(ControlError::Unavailable)
    }
    fn on_air(&self, _: i64) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
}

type Res<T> = Result<T, PlayoutError>;

/// A channel as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: i64,
    /// `config` or `api`.
    pub origin: String,
    /// Whether it should air (kept across restarts).
    pub running: bool,
    /// Whether the engine has it on air now.
    pub on_air: bool,
    pub schedule_version: i64,
    #[serde(flatten)]
    pub channel: Channel,
}

/// When an item airs, as resolved.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SlotView {
    pub start: String,
    pub end: String,
    pub start_frame: u64,
    pub frames: u64,
    /// The start as house timecode of its day (UTC), drop-frame at 29.97.
    pub timecode: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemView {
    #[serde(flatten)]
    pub item: Item,
    /// Absent: the item does not air (skipped, dropped or invalid).
    pub slot: Option<SlotView>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub channel_id: i64,
    /// Give it back (`?version=`) to refuse a lost update.
    pub version: i64,
    pub items: Vec<ItemView>,
    /// Every warning, item by item.
    pub warnings: Vec<Warning>,
}

/// A copy of a channel's state: settings, clock, items, version, library, plan.
type Snapshot = (Channel, FrameClock, Vec<Item>, i64, Library, Arc<Plan>);

/// One channel's loaded state.
struct Live {
    channel: Channel,
    clock: FrameClock,
    items: Vec<Item>,
    version: i64,
    lib: Library,
    plan: SharedPlan,
}

pub struct PlayoutService {
    catalog: Catalog,
    cfg: Playout,
    control: RwLock<Arc<dyn ChannelControl>>,
    channels: Mutex<HashMap<i64, Arc<Mutex<Live>>>>,
    /// (channel, item, version) checked again before air already.
    rechecked: Mutex<HashSet<(i64, String, i64)>>,
    aired_tx: mpsc::UnboundedSender<(i64, Aired)>,
    aired_rx: Mutex<Option<mpsc::UnboundedReceiver<(i64, Aired)>>>,
    /// Serializes schedule writes per service (the catalog's version check does across).
    write: tokio::sync::Mutex<()>,
}

impl PlayoutService {
    /// Whether any channel's plan airs `asset_id` at or after `now_ms` (retention must not
    /// purge it).
    pub fn schedules_asset(&self, asset_id: i64, now_ms: i64) -> bool {
        let id = asset_id.to_string();
        let channels: Vec<Arc<Mutex<Live>>> = match self.channels.lock() {
            Ok(g) => g.values().cloned().collect(),
            Err(e) => e.into_inner().values().cloned().collect(),
        };
        channels.iter().any(|l| {
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            l.plan.get().slots.iter().any(|s| {
                matches!(&s.material, super::plan::Material::File { asset_id, .. } if *asset_id == id)
                    && l.clock.ms_of(s.end()) > now_ms
            })
        })
    }
}

fn clock_of(c: &Channel) -> FrameClock {
    FrameClock {
        rate: c.rate,
        epoch_ms: model::parse_rfc3339(&c.epoch).unwrap_or(0),
    }
}

fn invalid(field: &str, why: impl Into<String>) -> PlayoutError {
    PlayoutError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

fn privileged(who: &Principal) -> bool {
    matches!(who.role, Role::Admin | Role::Operator | Role::Service)
}

fn operator(who: &Principal) -> Res<()> {
    if matches!(who.role, Role::Admin | Role::Operator) {
        Ok(())
    } else {
        Err(PlayoutError::Forbidden(format!(
            "role {} may not change channels",
            who.role.as_str()
        )))
    }
}

/// The origin of a channel's schedule: its epoch day's midnight (frames).
fn origin(clock: &FrameClock) -> u64 {
    let day_ms = clock.epoch_ms - clock.epoch_ms.rem_euclid(86_400_000);
    clock
        .frame_at_or_after(day_ms.max(clock.epoch_ms))
        .unwrap_or(0)
}

/// `frame` as timecode counted from its UTC day's first frame.
fn time_of_day(clock: &FrameClock, frame: u64) -> String {
    let ms = clock.ms_of(frame);
    let day = clock
        .frame_at_or_after(ms - ms.rem_euclid(86_400_000))
        .unwrap_or(0);
    clock.timecode(frame.saturating_sub(day))
}

impl PlayoutService {
    /// Writes the declared channels to the catalog, loads every channel and its rundown, and
    /// starts those that should run (through `control`).
    pub async fn open(
        catalog: Catalog,
        cfg: &Playout,
        control: Arc<dyn ChannelControl>,
    ) -> Res<Arc<PlayoutService>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Arc::new(PlayoutService {
            catalog,
            cfg: cfg.clone(),
            control: RwLock::new(control),
            channels: Mutex::new(HashMap::new()),
            rechecked: Mutex::new(HashSet::new()),
            aired_tx: tx,
            aired_rx: Mutex::new(Some(rx)),
            write: tokio::sync::Mutex::new(()),
        });
        let stored = s.catalog.channels().await?;
        for c in &cfg.channels {
            let settings =
                serde_json::to_string(c).map_err(|e| invalid("channel", e.to_string()))?;
            let old = stored.iter().find(|r| r.name == c.name);
            if old.is_none_or(|o| o.settings != settings || o.origin != "config") {
                s.catalog
                    .channel_put(
                        old.map(|o| o.id),
                        &c.name,
                        &settings,
                        "config",
                        old.map_or(c.enabled, |o| o.running),
                    )
                    .await?;
            }
        }
        for r in s.catalog.channels().await? {
            if r.origin == "config" && !cfg.channels.iter().any(|c| c.name == r.name) {
                // No longer declared: kept with its rundown and as-run, changed over the API now.
                tracing::warn!(channel = %r.name, "playout: no longer declared in antenne.toml: kept as a channel made over the API");
                s.catalog
                    .channel_put(Some(r.id), &r.name, &r.settings, "api", r.running)
                    .await?;
            }
            if let Err(e) = s.load(r.id).await {
                tracing::error!(channel = r.id, error = %e, "playout: channel not loaded");
                continue;
            }
            if r.running {
                if let Err(e) = s.start_engine(r.id).await {
                    tracing::warn!(channel = r.id, error = %e, "playout: channel not started");
                }
            }
        }
        Ok(s)
    }

    /// Attaches the channel engine (and starts the channels that should run).
    pub async fn set_control(&self, control: Arc<dyn ChannelControl>) -> Res<()> {
        if let Ok(mut g) = self.control.write() {
            *g = control;
        }
        for r in self.catalog.channels().await? {
            if r.running {
                if let Err(e) = self.start_engine(r.id).await {
                    tracing::warn!(channel = r.id, error = %e, "playout: channel not started");
                }
            }
        }
        Ok(())
    }

    fn control(&self) -> Arc<dyn ChannelControl> {
        self.control
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|_| Arc::new(NoEngine))
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn live(&self, id: i64) -> Res<Arc<Mutex<Live>>> {
        self.channels
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
            .ok_or_else(|| CatalogError::NotFound(format!("channel {id}")).into())
    }

    async fn library(&self, items: &mut [Item]) -> Res<Library> {
        let mut lib = Library::default();
        let mut seen: HashMap<(Option<i64>, Option<String>), Option<i64>> = HashMap::new();
        for it in items.iter_mut().filter(|i| i.kind == ItemType::Asset) {
            let key = (it.asset_id, it.house_id.clone());
            let found = match seen.get(&key) {
                Some(f) => *f,
                None => {
                    let a = self
                        .catalog
                        .scheduled_asset(it.asset_id, it.house_id.as_deref())
                        .await?;
                    let id = a.as_ref().map(|a| a.id);
                    if let Some(a) = a {
                        lib.by_id.insert(
                            a.id,
                            AssetInfo {
                                id: a.id,
                                house_id: a.house_id,
                                title: a.title,
                                status: a.status,
                                duration_s: a.duration_s,
                                path: PathBuf::from(a.path),
                                not_approved: match self.catalog.is_approved(a.id).await? {
                                    crate::catalog::review::Approval::Approved { .. } => None,
                                    crate::catalog::review::Approval::NotApproved { reason } => {
                                        Some(reason)
                                    }
                                },
                                windows: a
                                    .windows
                                    .into_iter()
                                    .map(|w| RightsWindow {
                                        from_ms: w.from_ms,
                                        until_ms: w.until_ms,
                                        territories: w.territories,
                                        platforms: w.platforms,
                                    })
                                    .collect(),
                            },
                        );
                    }
                    seen.insert(key, id);
                    id
                }
            };
            if let Some(id) = found {
                it.asset_id = Some(id);
                if it.house_id.is_none() {
                    it.house_id = lib.by_id.get(&id).map(|a| a.house_id.clone());
                }
            }
        }
        Ok(lib)
    }

    /// (Re)loads a channel and its rundown from the catalog.
    async fn load(&self, id: i64) -> Res<()> {
        let row = self.catalog.channel(id).await?;
        let channel: Channel = serde_json::from_str(&row.settings)
            .map_err(|e| invalid("settings", format!("stored settings unreadable: {e}")))?;
        let (text, version) = self.catalog.schedule(id).await?;
        let mut items: Vec<Item> = serde_json::from_str(&text)
            .map_err(|e| invalid("schedule", format!("stored schedule unreadable: {e}")))?;
        let lib = self.library(&mut items).await?;
        let clock = clock_of(&channel);
        let plan = SharedPlan::default();
        plan.set(resolve(&items, &clock, &lib, origin(&clock)));
        let old = self.channels.lock().ok().and_then(|m| m.get(&id).cloned());
        let live = Live {
            channel,
            clock,
            items,
            version,
            lib,
            // The engine holds the old handle: keep it.
            plan: old
                .as_ref()
                .and_then(|o| o.lock().ok().map(|l| l.plan.clone()))
                .unwrap_or(plan.clone()),
        };
        live.plan.set(plan.get().as_ref().clone());
        if let Ok(mut m) = self.channels.lock() {
            m.insert(id, Arc::new(Mutex::new(live)));
        }
        Ok(())
    }

    fn view(&self, id: i64, origin: String, running: bool) -> Res<ChannelView> {
        let l = self.live(id)?;
        let l = l.lock().map_err(|_| invalid("channel", "state poisoned"))?;
        Ok(ChannelView {
            id,
            origin,
            running,
            on_air: self.control().on_air(id),
            schedule_version: l.version,
            channel: l.channel.clone(),
        })
    }

    pub async fn list(&self) -> Res<Vec<ChannelView>> {
        let mut v = Vec::new();
        for r in self.catalog.channels().await? {
            if let Ok(c) = self.view(r.id, r.origin, r.running) {
                v.push(c);
            }
        }
        Ok(v)
    }

    pub async fn get(&self, id: i64) -> Res<ChannelView> {
        let r = self.catalog.channel(id).await?;
        self.view(id, r.origin, r.running)
    }

    fn check_channel(c: &Channel) -> Res<()> {
        if let Some((k, m)) = c.problems().into_iter().next() {
            return Err(invalid(k, m));
        }
        Ok(())
    }

    pub async fn create(&self, c: Channel, who: &Principal) -> Res<ChannelView> {
        operator(who)?;
        Self::check_channel(&c)?;
        let settings = serde_json::to_string(&c).map_err(|e| invalid("channel", e.to_string()))?;
        let r = self
            .catalog
            .channel_put(None, &c.name, &settings, "api", false)
            .await?;
        self.load(r.id).await?;
        self.view(r.id, r.origin, r.running)
    }

    pub async fn update(&self, id: i64, c: Channel, who: &Principal) -> Res<ChannelView> {
        operator(who)?;
        Self::check_channel(&c)?;
        let old = self.catalog.channel(id).await?;
        if old.origin == "config" {
            return Err(PlayoutError::Conflict(format!(
                "channel {:?} is declared in antenne.toml: change it there",
                old.name
            )));
        }
        let settings = serde_json::to_string(&c).map_err(|e| invalid("channel", e.to_string()))?;
        let r = self
            .catalog
            .channel_put(Some(id), &c.name, &settings, "api", old.running)
            .await?;
        self.load(id).await?;
        self.view(id, r.origin, r.running)
    }

    pub async fn delete(&self, id: i64, who: &Principal) -> Res<()> {
        operator(who)?;
        let old = self.catalog.channel(id).await?;
        if old.origin == "config" {
            return Err(PlayoutError::Conflict(format!(
                "channel {:?} is declared in antenne.toml: remove it there",
                old.name
            )));
        }
        if self.control().on_air(id) {
            return Err(PlayoutError::Conflict(format!(
                "channel {id} is on air: stop it first"
            )));
        }
        self.catalog.channel_delete(id).await?;
        if let Ok(mut m) = self.channels.lock() {
            m.remove(&id);
        }
        Ok(())
    }

    /// Non-privileged callers must be able to read every asset the items name.
    async fn may_use(&self, who: &Principal, items: &[Item]) -> Res<()> {
        if privileged(who) {
            return Ok(());
        }
        let mut seen = HashSet::new();
        for it in items {
            if let Some(a) = it.asset_id {
                if seen.insert(a) {
                    self.catalog.require(who, a, Perms::READ).await?;
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self, id: i64) -> Res<Snapshot> {
        let l = self.live(id)?;
        let l = l.lock().map_err(|_| invalid("channel", "state poisoned"))?;
        Ok((
            l.channel.clone(),
            l.clock,
            l.items.clone(),
            l.version,
            l.lib.clone(),
            l.plan.get(),
        ))
    }

    fn now_frame(&self, clock: &FrameClock) -> u64 {
        clock.frame_at(self.catalog.now_ms()).unwrap_or(0)
    }

    /// The rundown with each item's slot and warnings.
    /// `day` (`YYYY-MM-DD`): only the items that air that UTC day.
    pub async fn schedule(&self, id: i64, day: Option<&str>, who: &Principal) -> Res<ScheduleView> {
        let (ch, clock, items, version, lib, plan) = self.snapshot(id)?;
        self.may_use(who, &items).await?;
        let mut v = self.schedule_view(id, &ch, &clock, items, version, &lib, &plan);
        if let Some(d) = day {
            let ok = d.len() == 10 && model::parse_rfc3339(&format!("{d}T00:00:00Z")).is_some();
            if !ok {
                return Err(invalid("day", format!("{d:?} is not YYYY-MM-DD")));
            }
            v.items
                .retain(|i| i.slot.as_ref().is_some_and(|s| s.start.starts_with(d)));
            let keep: HashSet<String> = v.items.iter().map(|i| i.item.id.clone()).collect();
            v.warnings.retain(|w| keep.contains(&w.item));
        }
        Ok(v)
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule_view(
        &self,
        id: i64,
        ch: &Channel,
        clock: &FrameClock,
        items: Vec<Item>,
        version: i64,
        lib: &Library,
        plan: &Plan,
    ) -> ScheduleView {
        let place = Territory {
            territory: ch.territory.clone(),
            platform: ch.platform.clone(),
            require_approval: ch.require_approval || self.cfg.require_approval,
        };
        let warnings = validate::validate(&items, plan, clock, lib, &place);
        let items = items
            .into_iter()
            .map(|it| {
                let slot = plan.slot_of(&it.id).map(|s| SlotView {
                    start: model::rfc3339(clock.ms_of(s.start)),
                    end: model::rfc3339(clock.ms_of(s.end())),
                    start_frame: s.start,
                    frames: s.frames,
                    timecode: time_of_day(clock, s.start),
                });
                ItemView {
                    warnings: warnings
                        .iter()
                        .filter(|w| w.item == it.id)
                        .cloned()
                        .collect(),
                    item: it,
                    slot,
                }
            })
            .collect();
        ScheduleView {
            channel_id: id,
            version,
            items,
            warnings,
        }
    }

    /// Parses a schedule body by its content type: JSON (`{"items": [...]}` or a bare array),
    /// CSV (`text/csv`) or BXF (`application/xml`, `text/xml`).
    pub fn parse_body(&self, id: i64, content_type: &str, body: &[u8]) -> Res<Vec<Item>> {
        let (_, clock, ..) = self.snapshot(id)?;
        let text = std::str::from_utf8(body).map_err(|_| invalid("body", "not UTF-8 text"))?;
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "text/csv" => Ok(exchange::import_csv(text)?),
            "application/xml" | "text/xml" | "application/bxf+xml" => {
                Ok(exchange::import_bxf(text, &clock)?)
            }
            "application/json" | "" => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Doc {
                    items: Vec<Item>,
                }
                #[derive(serde::Deserialize)]
                #[serde(untagged)]
                enum Body {
                    Doc(Doc),
                    Items(Vec<Item>),
                }
                match serde_json::from_str::<Body>(text) {
                    Ok(Body::Doc(d)) => Ok(d.items),
                    Ok(Body::Items(v)) => Ok(v),
                    Err(_) => {
                        // Say what is wrong with the object form, the documented one.
                        serde_json::from_str::<Doc>(text)
                            .map(|d| d.items)
                            .map_err(|e| invalid("body", format!("not a schedule: {e}")))
                    }
                }
            }
            other => Err(invalid(
                "content-type",
                format!("{other:?}: application/json, text/csv or application/xml (BXF)"),
            )),
        }
    }

    /// Replaces the rundown (`append`: adds the items at its end). Refused when it would change
    /// what has aired, or when `expect` (a version) is stale.
    pub async fn put_schedule(
        &self,
        id: i64,
        mut items: Vec<Item>,
        append: bool,
        expect: Option<i64>,
        who: &Principal,
    ) -> Res<ScheduleView> {
        if !matches!(
            who.role,
            Role::Admin | Role::Operator | Role::Editor | Role::Service
        ) {
            return Err(PlayoutError::Forbidden(format!(
                "role {} may not change schedules",
                who.role.as_str()
            )));
        }
        let _w = self.write.lock().await;
        let (ch, clock, old_items, version, old_lib, old_plan) = self.snapshot(id)?;
        if expect.is_some_and(|v| v != version) {
            return Err(PlayoutError::Conflict(format!(
                "the schedule is at version {version}, not {}",
                expect.unwrap_or(0)
            )));
        }
        if append {
            let mut all = old_items.clone();
            all.append(&mut items);
            items = all;
        }
        model::prepare(&mut items, clock.rate)?;
        let lib = self.library(&mut items).await?;
        self.may_use(who, &items).await?;
        let _ = old_lib;
        let plan = resolve(&items, &clock, &lib, origin(&clock));
        edit::keeps_the_past(&old_plan, &plan, self.now_frame(&clock))?;
        self.commit(id, &ch, clock, items, version, lib, plan).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        id: i64,
        ch: &Channel,
        clock: FrameClock,
        items: Vec<Item>,
        version: i64,
        lib: Library,
        plan: Plan,
    ) -> Res<ScheduleView> {
        let text = serde_json::to_string(&items).map_err(|e| invalid("schedule", e.to_string()))?;
        let v = self.catalog.schedule_put(id, &text, version).await?;
        let view = self.schedule_view(id, ch, &clock, items.clone(), v, &lib, &plan);
        {
            let l = self.live(id)?;
            let mut l = l.lock().map_err(|_| invalid("channel", "state poisoned"))?;
            l.items = items;
            l.version = v;
            l.lib = lib;
            l.plan.set(plan);
        }
        self.warn(id, &view.warnings, &view.items).await;
        Ok(view)
    }

    /// Puts a `warning` event on the change feed for each item with warnings.
    async fn warn(&self, id: i64, warnings: &[Warning], items: &[ItemView]) {
        let mut done = HashSet::new();
        for w in warnings {
            if !done.insert(w.item.clone()) {
                continue;
            }
            tracing::warn!(channel = id, item = %w.item, code = w.code, reason = %w.reason, "playout: schedule warning");
            metrics::counter!("antenne_playout_schedule_warnings_total", "code" => w.code)
                .increment(1);
            let asset = items
                .iter()
                .find(|i| i.item.id == w.item)
                .and_then(|i| i.item.asset_id);
            if let Err(e) = self
                .catalog
                .playout_event("schedule", id, "warning", asset)
                .await
            {
                tracing::error!(channel = id, error = %e, "playout: warning not on the change feed");
            }
        }
    }

    /// An edit made on air, at the catalog clock's frame.
    pub async fn edit(&self, id: i64, e: Edit, who: &Principal) -> Res<ScheduleView> {
        if !matches!(
            who.role,
            Role::Admin | Role::Operator | Role::Editor | Role::Service
        ) {
            return Err(PlayoutError::Forbidden(format!(
                "role {} may not change schedules",
                who.role.as_str()
            )));
        }
        let _w = self.write.lock().await;
        let (ch, clock, items, version, mut lib, _) = self.snapshot(id)?;
        let mut e = e;
        let mut extra: Vec<Item> = match &mut e {
            Edit::Insert { item, .. } => vec![item.clone()],
            Edit::Replace { with, .. } => vec![with.clone()],
            _ => vec![],
        };
        if !extra.is_empty() {
            let more = self.library(&mut extra).await?;
            self.may_use(who, &extra).await?;
            lib.by_id.extend(more.by_id);
            match &mut e {
                Edit::Insert { item, .. } => *item = extra.remove(0),
                Edit::Replace { with, .. } => *with = extra.remove(0),
                _ => {}
            }
        }
        self.may_use(who, &items).await?;
        let o = origin(&clock);
        let now = self.now_frame(&clock);
        let new = edit::apply(&items, e, now, &clock, &lib, o)?;
        let plan = resolve(&new, &clock, &lib, o);
        self.commit(id, &ch, clock, new, version, lib, plan).await
    }

    pub async fn epg_xmltv(&self, id: i64, who: &Principal) -> Res<String> {
        let (ch, clock, items, _, lib, plan) = self.snapshot(id)?;
        self.may_use(who, &items).await?;
        Ok(exchange::xmltv(
            &format!("{}.antenne", ch.name),
            &ch.name,
            &items,
            &plan,
            &clock,
            &lib,
        ))
    }

    pub async fn now_next(&self, id: i64, who: &Principal) -> Res<NowNext> {
        let (_, clock, items, _, lib, plan) = self.snapshot(id)?;
        self.may_use(who, &items).await?;
        Ok(exchange::now_next(
            &items,
            &plan,
            &clock,
            &lib,
            self.catalog.now_ms(),
        ))
    }

    /// As-run records that started within `[from_ms, until_ms)`.
    pub async fn asrun(
        &self,
        id: i64,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
        who: &Principal,
    ) -> Res<(Channel, FrameClock, Vec<AsRun>)> {
        let (ch, clock, items, ..) = self.snapshot(id)?;
        self.may_use(who, &items).await?;
        let f = |ms: Option<i64>, d: i64| {
            ms.map_or(d, |m| {
                clock
                    .frame_at_or_after(m)
                    .map_or(0, |f| i64::try_from(f).unwrap_or(i64::MAX))
            })
        };
        let rows = self
            .catalog
            .asrun(id, f(from_ms, 0), f(until_ms, i64::MAX), 100_000)
            .await?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let v = rows
            .into_iter()
            .map(|r| AsRun {
                scheduled_start: model::rfc3339(clock.ms_of(u(r.scheduled_start_frame))),
                actual_start: model::rfc3339(clock.ms_of(u(r.actual_start_frame))),
                item: r.item,
                kind: r.kind,
                title: r.title,
                asset_id: r.asset_id,
                house_id: r.house_id,
                scheduled_start_frame: u(r.scheduled_start_frame),
                scheduled_frames: u(r.scheduled_frames),
                actual_start_frame: u(r.actual_start_frame),
                actual_frames: u(r.actual_frames),
                substitution: r.substitution,
            })
            .collect();
        Ok((ch, clock, v))
    }

    /// Records what the engine reports as aired.
    pub async fn record_aired(&self, id: i64, a: &Aired) -> Res<()> {
        let (_, clock, items, _, lib, _) = self.snapshot(id)?;
        let title = items
            .iter()
            .find(|i| i.id == a.slot.item)
            .map(|i| exchange::title_of(i, &lib))
            .unwrap_or_else(|| "filler".into());
        let r = AsRun::of(a, &clock, &title);
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.catalog
            .asrun_add(&AsRunRow {
                channel_id: id,
                item: r.item,
                kind: r.kind,
                title: r.title,
                asset_id: r.asset_id,
                house_id: r.house_id,
                scheduled_start_frame: i(r.scheduled_start_frame),
                scheduled_frames: i(r.scheduled_frames),
                actual_start_frame: i(r.actual_start_frame),
                actual_frames: i(r.actual_frames),
                substitution: r.substitution,
                ..AsRunRow::default()
            })
            .await?;
        Ok(())
    }

    /// Drains the engine's reports into the as-run log until `stop`.
    pub async fn run_asrun(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let Some(mut rx) = self.aired_rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                m = rx.recv() => match m {
                    Some((id, a)) => {
                        if let Err(e) = self.record_aired(id, &a).await {
                            tracing::error!(channel = id, error = %e, "playout: as-run not recorded");
                        }
                    }
                    None => break,
                },
            }
        }
    }

    /// Validates again the items that start within `check_before_s` of `now_ms` and were not
    /// checked again at this schedule version; their warnings go on the change feed. Returns
    /// (channel, warning) for each.
    pub async fn check_soon(&self, now_ms: i64) -> Vec<(i64, Warning)> {
        let ids: Vec<i64> = self
            .channels
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for id in ids {
            let Ok((ch, clock, mut items, version, _, _)) = self.snapshot(id) else {
                continue;
            };
            let Some(from) = clock.frame_at(now_ms) else {
                continue;
            };
            let until = clock
                .frame_at(now_ms + i64::from(self.cfg.check_before_s) * 1000)
                .unwrap_or(from);
            // The catalog as it is now: assets may have changed since the schedule was loaded.
            let Ok(lib) = self.library(&mut items).await else {
                continue;
            };
            let plan = resolve(&items, &clock, &lib, origin(&clock));
            let soon: Vec<String> = plan
                .slots
                .iter()
                .filter(|s| !s.item.is_empty() && s.start > from && s.start <= until)
                .map(|s| s.item.clone())
                .collect();
            let fresh: Vec<String> = match self.rechecked.lock() {
                Ok(mut r) => soon
                    .into_iter()
                    .filter(|i| r.insert((id, i.clone(), version)))
                    .collect(),
                Err(_) => continue,
            };
            if fresh.is_empty() {
                continue;
            }
            let view = self.schedule_view(id, &ch, &clock, items, version, &lib, &plan);
            let ws: Vec<Warning> = view
                .warnings
                .iter()
                .filter(|w| fresh.contains(&w.item))
                .cloned()
                .collect();
            self.warn(id, &ws, &view.items).await;
            out.extend(ws.into_iter().map(|w| (id, w)));
        }
        out
    }

    /// Runs [`Self::check_soon`] every `check_every_s` until `stop`.
    pub async fn run_checks(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every = std::time::Duration::from_secs(u64::from(self.cfg.check_every_s));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {
                    self.check_soon(self.catalog.now_ms()).await;
                }
            }
        }
    }

    /// The files of catalog assets by house id (the filler, a logo given as a house id).
    async fn asset_paths(&self, field: &str, house_ids: &[String]) -> Res<Vec<PathBuf>> {
        let mut v = Vec::new();
        for h in house_ids {
            match self.catalog.scheduled_asset(None, Some(h)).await? {
                Some(a) if !a.path.is_empty() => v.push(PathBuf::from(a.path)),
                _ => {
                    return Err(invalid(
                        field,
                        format!("house id {h:?}: no such asset with a file in the catalog"),
                    ))
                }
            }
        }
        Ok(v)
    }

    /// Finds the channel's filler and logo in the catalog, then hands the channel to the engine.
    async fn start_engine(&self, id: i64) -> Res<()> {
        let l = self.live(id)?;
        let (channel, clock, timeline) = {
            let l = l.lock().map_err(|_| invalid("channel", "state poisoned"))?;
            (l.channel.clone(), l.clock, l.plan.clone())
        };
        let filler = self.asset_paths("filler", &channel.filler).await?;
        let logo = match channel.logo.as_deref().filter(|l| !l.is_empty()) {
            Some(l) if std::path::Path::new(l).is_absolute() => Some(PathBuf::from(l)),
            Some(l) => self
                .asset_paths("logo", &[l.to_string()])
                .await?
                .into_iter()
                .next(),
            None => None,
        };
        self.control().start(ChannelRun {
            id,
            channel,
            clock,
            timeline: Arc::new(timeline),
            aired: self.aired_tx.clone(),
            filler,
            logo,
        })?;
        Ok(())
    }

    pub async fn start(&self, id: i64, who: &Principal) -> Res<ChannelView> {
        operator(who)?;
        self.catalog.channel(id).await?;
        self.start_engine(id).await?;
        self.catalog.channel_set_running(id, true).await?;
        self.catalog
            .playout_event("channel", id, "started", None)
            .await?;
        self.get(id).await
    }

    pub async fn stop(&self, id: i64, who: &Principal) -> Res<ChannelView> {
        operator(who)?;
        self.catalog.channel(id).await?;
        self.control().stop(id)?;
        self.catalog.channel_set_running(id, false).await?;
        self.catalog
            .playout_event("channel", id, "stopped", None)
            .await?;
        self.get(id).await
    }

    pub async fn slate(&self, id: i64, on: bool, who: &Principal) -> Res<ChannelView> {
        operator(who)?;
        self.catalog.channel(id).await?;
        self.control().slate(id, on)?;
        self.catalog
            .playout_event(
                "channel",
                id,
                if on { "slate_on" } else { "slate_off" },
                None,
            )
            .await?;
        self.get(id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::catalog::{Clock, OpenOptions};
    use crate::playout::plan::{Material, Substitution};

    #[derive(Debug)]
    struct FakeClock(AtomicI64);

    impl Clock for FakeClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    const T0: i64 = 1_796_212_800_000; // 2026-12-02T12:00:00Z

    fn item(id: &str, start_s: i64) -> Item {
        Item {
            id: id.into(),
            house_id: Some(format!("MISSING-{id}")),
            start: Some(model::rfc3339(T0 + start_s * 1000)),
            out: Some(model::Point::Seconds(60.0)),
            ..Item::default()
        }
    }

    #[tokio::test]
    async fn checks_again_before_air_on_its_clock_and_records_as_run() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock(AtomicI64::new(T0)));
        let cat = Catalog::open(
            OpenOptions {
                url: String::new(),
                data_dir: dir.path().to_path_buf(),
                max_connections: 0,
                naming: crate::naming::Template::parse("{channel}-{seq:06}").unwrap(),
                channel: "TST".into(),
                fields: Vec::new(),
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let s = PlayoutService::open(cat.clone(), &Playout::default(), Arc::new(NoEngine))
            .await
            .unwrap();
        let admin = Principal {
            user_id: 1,
            username: "admin".into(),
            role: Role::Admin,
            groups: Arc::from(Vec::new()),
        };
        let ch: Channel = serde_json::from_str(r#"{"name": "one"}"#).unwrap();
        let id = s.create(ch, &admin).await.unwrap().id;
        // Items at +10 min, +40 min and +2 h.
        let v = s
            .put_schedule(
                id,
                vec![item("a", 600), item("b", 2400), item("c", 7200)],
                false,
                None,
                &admin,
            )
            .await
            .unwrap();
        assert!(v
            .warnings
            .iter()
            .any(|w| w.item == "c" && w.code == "asset_missing"));
        let mut feed = cat.subscribe();
        let soon = |v: Vec<(i64, Warning)>| {
            let mut items: Vec<String> = v.into_iter().map(|(_, w)| w.item).collect();
            items.dedup();
            items
        };
        assert_eq!(soon(s.check_soon(T0).await), ["a"]);
        assert_eq!(feed.recv().await.unwrap().op, "warning");
        // Not again at the same version; b once it is 30 min away.
        assert!(s.check_soon(T0 + 60_000).await.is_empty());
        clock.0.store(T0 + 700_000, Ordering::SeqCst);
        assert_eq!(soon(s.check_soon(T0 + 700_000).await), ["b"]);
        assert_eq!(soon(s.check_soon(T0 + 5_500_000).await), ["c"]);
        // An edit on air at the injected clock's frame: a has aired, it cannot move.
        clock.0.store(T0 + 630_000, Ordering::SeqCst);
        let e = s
            .edit(
                id,
                Edit::Move {
                    item: "a".into(),
                    after: Some("c".into()),
                },
                &admin,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, PlayoutError::Schedule(ScheduleError::Aired { .. })),
            "{e}"
        );
        // A PUT that would rewrite what aired is refused too.
        let e = s
            .put_schedule(id, vec![item("b", 2400)], false, None, &admin)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PlayoutError::Schedule(ScheduleError::Aired { .. })),
            "{e}"
        );
        // What the engine reports becomes as-run.
        let slot = s.snapshot(id).unwrap().5.slots[0].clone();
        assert_eq!(slot.item, "a");
        assert_eq!(slot.material, Material::Filler, "its asset is missing");
        let aired = Aired {
            start: slot.start,
            frames: 100,
            substitution: Some(Substitution::Unplayable("no file".into())),
            slot: slot.clone(),
        };
        s.aired_tx.send((id, aired)).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(s.clone().run_asrun(stop.clone()));
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = s.asrun(id, None, None, &admin).await.unwrap().2;
            if !rows.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.cancel();
        run.await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].scheduled_start_frame, slot.start);
        assert_eq!(rows[0].scheduled_frames, 1500);
        assert_eq!(rows[0].actual_frames, 100);
        assert_eq!(rows[0].substitution.as_deref(), Some("unplayable: no file"));
        assert_eq!(rows[0].scheduled_start, "2026-12-02T12:10:00Z");
        // Control is refused until an engine is attached.
        assert!(matches!(
            s.start(id, &admin).await.unwrap_err(),
            PlayoutError::Control(ControlError::Unavailable)
        ));
    }

    /// Takes the runs it is handed.
    #[derive(Default)]
    struct Taker(Mutex<Vec<ChannelRun>>);

    impl ChannelControl for Taker {
        fn start(&self, run: ChannelRun) -> Result<(), ControlError> {
            self.0.lock().unwrap().push(run);
            Ok(())
        }
        fn stop(&self, _: i64) -> Result<(), ControlError> {
            Ok(())
        }
        fn slate(&self, _: i64, _: bool) -> Result<(), ControlError> {
            Ok(())
        }
        fn on_air(&self, _: i64) -> bool {
            false
        }
    }

    /// On a current-thread runtime (this test's), a start finds the filler and the logo in the
    /// catalog before the engine is handed the channel; a filler that is not there is a 4xx
    /// naming it, and the engine is not asked.
    #[tokio::test]
    async fn filler_and_logo_are_found_before_the_engine_starts() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(
            OpenOptions {
                url: String::new(),
                data_dir: dir.path().to_path_buf(),
                max_connections: 0,
                naming: crate::naming::Template::parse("{channel}-{seq:06}").unwrap(),
                channel: "TST".into(),
                fields: Vec::new(),
            },
            Arc::new(FakeClock(AtomicI64::new(T0))),
        )
        .await
        .unwrap();
        let taker = Arc::new(Taker::default());
        let s = PlayoutService::open(cat.clone(), &Playout::default(), taker.clone())
            .await
            .unwrap();
        let pw = crate::catalog::access::new_secret("");
        let u = cat
            .create_user("boss", "Boss", Role::Admin, &pw)
            .await
            .unwrap();
        let admin = Principal {
            user_id: u.id,
            username: "admin".into(),
            role: Role::Admin,
            groups: Arc::from(Vec::new()),
        };
        let file = |path: &str, sha: &str| crate::catalog::assets::NewFile {
            role: "source".into(),
            path: path.into(),
            size: 1,
            sha256: sha.into(),
            container: "mpegts".into(),
            video_codec: "h264".into(),
            width: 320,
            height: 180,
            duration_s: 2.0,
            technical: serde_json::json!({}),
            profile: String::new(),
            verification: None,
        };
        let input = crate::catalog::assets::AssetInput {
            title: Some("filler".into()),
            ..Default::default()
        };
        let (fill, _) = cat
            .ingest(&admin, &input, &file("/m/fill.ts", &"a".repeat(64)), false)
            .await
            .unwrap();
        let (logo, _) = cat
            .ingest(&admin, &input, &file("/m/logo.png", &"b".repeat(64)), false)
            .await
            .unwrap();
        let ch: Channel = serde_json::from_value(serde_json::json!({
            "name": "found", "filler": [fill.house_id], "logo": logo.house_id}))
        .unwrap();
        let id = s.create(ch, &admin).await.unwrap().id;
        s.start(id, &admin).await.unwrap();
        {
            let runs = taker.0.lock().unwrap();
            assert_eq!(runs.len(), 1);
            assert_eq!(runs[0].filler, [PathBuf::from("/m/fill.ts")]);
            assert_eq!(runs[0].logo, Some(PathBuf::from("/m/logo.png")));
        }
        let ch: Channel =
            serde_json::from_value(serde_json::json!({"name": "missing", "filler": ["NOPE-1"]}))
                .unwrap();
        let id = s.create(ch, &admin).await.unwrap().id;
        let e = s.start(id, &admin).await.unwrap_err();
        assert!(
            matches!(&e, PlayoutError::Invalid { field, why } if field == "filler" && why.contains("NOPE-1")),
            "{e}"
        );
        assert_eq!(taker.0.lock().unwrap().len(), 1, "the engine was not asked");
    }
}
