//! The TOML configuration file and the opening of a data directory.
//!
//! ```toml
//! [sla]
//! threshold_s = 140        # T, on the net wait
//! target = 0.60
//! grave_floor = 0.40
//! policy = "answered"      # or "answered_and_abandoned", "offered"
//! [penalties]
//! monthly_fee_eur = 20000.0
//! annual_fee_eur = 240000.0
//! [volume]
//! annual_index = 136000
//! tolerance_pct = 20.0
//! [calendar]
//! mon = "08:00-18:00"      # ... sun; "closed" for a closed day
//! sat = "08:00-12:00"
//! patron_sites = ["esine"] # esine, breno, darfo, pisogne, edolo (off by default)
//! extra_closures = ["2019-08-14"]
//! mode = "cup"            # or "24x7": every hour is service time, no holidays
//! [queue_log]
//! announcement = "before_queue"   # or { in_queue_s = 40 }
//! queue_lines = { "500" = "cup" }  # queue -> line (default: the queue's name)
//! did_lines = { "7777" = "prelievi" } # DID -> line, wins over the queue's
//! timezone = "Europe/Rome"        # local date-times of the CSV export
//! [privacy]
//! caller_key_hex = "..."   # 64 hex digits; or env NETWAIT_CALLER_KEY; else DATA/secret.key
//! [live]                   # serve's live state and alerts (see netwait_api::live::config)
//! long_wait_s = 120
//! staffing = [["08:00", 3], ["08:30", 4], ["09:00", 6]]
//! webhook_url = "http://127.0.0.1:9000/alerts"
//! [[sources]]              # serve follows these logs itself (see `netwait_ingest::tail`)
//! kind = "tail"
//! format = "queue_log"     # or "ndjson"
//! path = "/var/log/asterisk/queue_log"   # relative: to the directory of this file
//! [log]                    # --log-format, NETWAIT_LOG_FORMAT, -v and RUST_LOG win
//! format = "json"          # or "text"
//! level = "info"           # a tracing filter, e.g. "netwait_api=debug,info"
//! ```

use super::StoreArgs;
use anyhow::{Context, bail};
use jiff::tz::TimeZone;
use netwait_aggregator::domain::arguments;
use netwait_aggregator::domain::calendar::{Hours, PatronSite, ServiceCalendar};
use netwait_aggregator::domain::config::{MetricsConfig, SlaPolicy};
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::time::parse_date;
use netwait_aggregator::engine::Engine;
use netwait_aggregator::store::StoreError;
use netwait_aggregator::store::embedded::EmbeddedStore;
use netwait_aggregator::store::secrets::{Secrets, unhex};
use netwait_api::live::{LiveConfig, LiveRules};
use netwait_ingest::decoded::DecodeSettings;
use netwait_ingest::format::Format;
use netwait_ingest::queue_log::Announcement;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    sla: Sla,
    #[serde(default)]
    penalties: Penalties,
    #[serde(default)]
    volume: Volume,
    #[serde(default)]
    calendar: Calendar,
    #[serde(default)]
    privacy: Privacy,
    #[serde(default)]
    queue_log: QueueLog,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    live: LiveConfig,
    #[serde(default)]
    sources: Vec<SourceToml>,
    #[serde(default)]
    log: Log,
    /// `[store]`, `[kafka]`, `[serve]`: read (and checked) by `deployment`.
    #[serde(rename = "store")]
    _store: Option<serde::de::IgnoredAny>,
    #[serde(rename = "kafka")]
    _kafka: Option<serde::de::IgnoredAny>,
    #[serde(rename = "serve")]
    _serve: Option<serde::de::IgnoredAny>,
}

/// A `[[sources]]` entry, checked by [`source_specs`].
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct SourceToml {
    kind: Option<String>,
    format: Option<String>,
    path: Option<PathBuf>,
}

/// A source `serve` drives itself: a followed log (`kind = "tail"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub format: Format,
    pub path: PathBuf,
}

/// The `[[sources]]` entries, each checked: a clear error names the entry (from 1).
fn source_specs(entries: Vec<SourceToml>) -> anyhow::Result<Vec<SourceSpec>> {
    let mut specs: Vec<SourceSpec> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let n = i + 1;
        match e.kind.as_deref() {
            Some("tail") => {}
            Some(k) => bail!("[[sources]] entry {n}: kind {k:.64?}: the one kind is \"tail\""),
            None => bail!("[[sources]] entry {n}: kind is missing (kind = \"tail\")"),
        }
        let format = match e.format.as_deref() {
            None => bail!("[[sources]] entry {n}: format is missing (\"queue_log\" or \"ndjson\")"),
            Some(f) => match Format::parse(f) {
                Some(f @ (Format::QueueLog | Format::Ndjson)) => f,
                _ => bail!(
                    "[[sources]] entry {n}: format {f:.64?}: a tail follows \"queue_log\" or \"ndjson\""
                ),
            },
        };
        let Some(path) = e.path.filter(|p| !p.as_os_str().is_empty()) else {
            bail!("[[sources]] entry {n}: path is missing (the file to follow)");
        };
        if specs.iter().any(|s| s.path == path) {
            bail!(
                "[[sources]] entry {n}: {} is followed twice",
                path.display()
            );
        }
        specs.push(SourceSpec { format, path });
    }
    Ok(specs)
}

/// `[log]`: how a command started with this configuration logs (the command line's
/// `--log-format`, `NETWAIT_LOG_FORMAT`, `-v` and `RUST_LOG` win).
#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: Option<String>,
    /// A `tracing` filter: `info`, `warn`, `netwait_api=debug,info` ...
    pub level: Option<String>,
}

impl Log {
    fn check(&self) -> anyhow::Result<()> {
        if let Some(f) = &self.format
            && f != "text"
            && f != "json"
        {
            bail!("log.format {f:.32?}: use \"text\" or \"json\"");
        }
        if let Some(l) = &self.level {
            tracing_subscriber::EnvFilter::try_new(l).with_context(|| {
                format!("log.level {l:.64?}: a tracing filter such as \"info\"")
            })?;
        }
        Ok(())
    }
}

/// The `[log]` section of the configuration `store` names, read before logging starts
/// (so before the rest is checked): `None` without a file, or when it cannot be read or
/// its `[log]` is not valid (the command's own load then says why).
pub fn log_settings(store: &StoreArgs) -> Option<Log> {
    let path = store
        .config
        .clone()
        .unwrap_or_else(|| store.data.join("netwait.toml"));
    let text = std::fs::read_to_string(path).ok()?;
    #[derive(Deserialize)]
    struct OnlyLog {
        log: Option<toml::Value>,
    }
    let only: OnlyLog = toml::from_str(&text).ok()?;
    let log: Log = only.log?.try_into().ok()?;
    log.check().ok()?;
    Some(log)
}

/// `[tls]`: both listeners serve TLS only, with this PEM certificate chain and key.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Tls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// `[auth]`: the hashes (`netwait token hash`) of the bearer tokens of each role.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Auth {
    #[serde(default)]
    push: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_concurrent_streams: Option<u32>,
}

/// What `serve` takes from the configuration: TLS, tokens, limits.
#[derive(Debug, Default)]
pub struct ServerSettings {
    /// (certificate chain, key), PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub push_hashes: Vec<String>,
    pub read_hashes: Vec<String>,
    pub max_concurrent_streams: Option<u32>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct QueueLog {
    announcement: Option<AnnouncementToml>,
    #[serde(default)]
    queue_lines: HashMap<String, String>,
    #[serde(default)]
    did_lines: HashMap<String, String>,
    timezone: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum AnnouncementToml {
    Named(String),
    InQueue { in_queue_s: f64 },
}

/// `[calendar] mode` and `--calendar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarMode {
    /// The contract's calendar (spec §3), with the `[calendar]` hours and closures.
    Cup,
    /// Every hour of every day is service time.
    AlwaysOpen,
}

impl CalendarMode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "cup" => Some(Self::Cup),
            "24x7" => Some(Self::AlwaysOpen),
            _ => None,
        }
    }

    pub fn parse_arg(text: &str) -> Result<Self, String> {
        Self::parse(text).ok_or_else(|| format!("{text:.32}: use cup or 24x7"))
    }
}

/// A time zone by its tz database name (bundled in the binary).
pub fn timezone(name: &str) -> anyhow::Result<TimeZone> {
    TimeZone::get(name)
        .with_context(|| format!("unknown time zone {name:.64?} (e.g. Europe/Rome, UTC)"))
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Sla {
    threshold_s: Option<f64>,
    message_s: Option<f64>,
    target: Option<f64>,
    grave_floor: Option<f64>,
    policy: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Penalties {
    monthly_fee_eur: Option<f64>,
    annual_fee_eur: Option<f64>,
    deficient_month_pct: Option<f64>,
    grave_month_pct: Option<f64>,
    termination_pct: Option<f64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Volume {
    annual_index: Option<u64>,
    tolerance_pct: Option<f64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Calendar {
    mon: Option<String>,
    tue: Option<String>,
    wed: Option<String>,
    thu: Option<String>,
    fri: Option<String>,
    sat: Option<String>,
    sun: Option<String>,
    #[serde(default)]
    patron_sites: Vec<String>,
    #[serde(default)]
    extra_closures: Vec<String>,
    mode: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Privacy {
    caller_key_hex: Option<String>,
}

/// Everything a command needs from configuration.
pub struct Settings {
    pub metrics: MetricsConfig,
    pub caller_key: Option<[u8; 32]>,
    /// How the PBX formats are read.
    pub decode: DecodeSettings,
    pub server: ServerSettings,
    /// The live state's alert rules, staffing plan and webhook (`serve`).
    pub live: LiveRules,
    /// The sources `serve` drives itself (`[[sources]]`).
    pub sources: Vec<SourceSpec>,
}

fn parse_settings(text: &str) -> anyhow::Result<Settings> {
    let f: File = toml::from_str(text)?;
    let mut m = MetricsConfig::default();
    if let Some(t) = f.sla.threshold_s {
        m.threshold_ms = arguments::threshold_ms_from_secs(t).context("sla.threshold_s")?;
    }
    if let Some(t) = f.sla.message_s {
        m.message_ms = arguments::message_ms_from_secs(t).context("sla.message_s")?;
    }
    if let Some(t) = f.sla.grave_floor {
        m.grave_floor = arguments::share(t).context("sla.grave_floor")?;
    }
    if let Some(t) = f.sla.target {
        m.target = arguments::share(t).context("sla.target")?;
    }
    // Checked with the defaults too: a target of 0.3 alone is below the default floor.
    arguments::target(m.target, m.grave_floor).context("sla.target")?;
    if let Some(p) = f.sla.policy {
        m.policy = SlaPolicy::parse(&p).with_context(|| {
            format!("sla.policy {p:?}: use answered, answered_and_abandoned or offered")
        })?;
    }
    let p = &mut m.penalties;
    p.monthly_fee_eur = f.penalties.monthly_fee_eur.or(p.monthly_fee_eur);
    p.annual_fee_eur = f.penalties.annual_fee_eur.or(p.annual_fee_eur);
    p.deficient_month_pct = f
        .penalties
        .deficient_month_pct
        .unwrap_or(p.deficient_month_pct);
    p.grave_month_pct = f.penalties.grave_month_pct.unwrap_or(p.grave_month_pct);
    p.termination_pct = f.penalties.termination_pct.unwrap_or(p.termination_pct);
    m.volume.annual_index = f.volume.annual_index.unwrap_or(m.volume.annual_index);
    m.volume.tolerance_pct = f.volume.tolerance_pct.unwrap_or(m.volume.tolerance_pct);
    let c = &f.calendar;
    for (i, day) in [&c.mon, &c.tue, &c.wed, &c.thu, &c.fri, &c.sat, &c.sun]
        .into_iter()
        .enumerate()
    {
        if let Some(text) = day {
            m.calendar.week[i] = if text == "closed" {
                None
            } else {
                Some(Hours::parse(text).with_context(|| {
                    format!("calendar hours {text:?}: use \"HH:MM-HH:MM\" or \"closed\"")
                })?)
            };
        }
    }
    for s in &c.patron_sites {
        m.calendar
            .patron_sites
            .push(PatronSite::parse(s).with_context(|| format!("unknown patron site {s:?}"))?);
    }
    for d in &c.extra_closures {
        m.calendar
            .extra_closures
            .insert(parse_date(d).with_context(|| format!("extra closure {d:?}: use YYYY-MM-DD"))?);
    }
    if let Some(mode) = &c.mode {
        let mode = CalendarMode::parse(mode)
            .with_context(|| format!("calendar.mode {mode:?}: use \"cup\" or \"24x7\""))?;
        apply_calendar(&mut m, mode);
    }
    let mut decode = DecodeSettings::default();
    let q = f.queue_log;
    decode.queue_log.announcement = match q.announcement {
        None => Announcement::BeforeQueue,
        Some(AnnouncementToml::Named(name)) if name == "before_queue" => Announcement::BeforeQueue,
        Some(AnnouncementToml::Named(name)) => {
            bail!("queue_log.announcement {name:?}: use \"before_queue\" or {{ in_queue_s = 40 }}")
        }
        Some(AnnouncementToml::InQueue { in_queue_s }) => Announcement::InQueue(
            arguments::message_ms_from_secs(in_queue_s)
                .context("queue_log.announcement.in_queue_s")?,
        ),
    };
    decode.queue_log.queue_lines = q.queue_lines;
    decode.queue_log.did_lines = q.did_lines;
    if let Some(name) = &q.timezone {
        decode.timezone = timezone(name).context("queue_log.timezone")?;
    }
    let caller_key = match f.privacy.caller_key_hex {
        Some(h) => Some(unhex::<32>(&h).context("privacy.caller_key_hex must be 64 hex digits")?),
        None => None,
    };
    let tls = match (f.tls.cert, f.tls.key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("[tls] needs both cert and key (PEM files)"),
    };
    if f.limits.max_concurrent_streams == Some(0) {
        bail!("limits.max_concurrent_streams must be 1 or more");
    }
    let live = f.live.rules()?;
    let sources = source_specs(f.sources)?;
    f.log.check()?;
    Ok(Settings {
        metrics: m,
        caller_key,
        decode,
        server: ServerSettings {
            tls,
            push_hashes: f.auth.push,
            read_hashes: f.auth.read,
            max_concurrent_streams: f.limits.max_concurrent_streams,
        },
        live,
        sources,
    })
}

/// The calendar a mode stands for (`cup` keeps the configured hours and closures).
fn apply_calendar(m: &mut MetricsConfig, mode: CalendarMode) {
    if mode == CalendarMode::AlwaysOpen {
        m.calendar = ServiceCalendar::always_open();
    }
}

/// Reads `--config`, else `DATA/netwait.toml` if present, else the defaults; the
/// environment's `NETWAIT_CALLER_KEY` wins over the file's caller key.
pub fn load(store: &StoreArgs) -> anyhow::Result<Settings> {
    load_file(path(store), store)
}

/// The configuration file of `store`: `--config`, else `DATA/netwait.toml` if present.
pub fn path(store: &StoreArgs) -> Option<PathBuf> {
    let default_path = store.data.join("netwait.toml");
    store
        .config
        .clone()
        .or_else(|| default_path.exists().then_some(default_path))
}

/// The settings of configuration file `path` (the defaults without one), with the
/// command's `--calendar` and the environment's caller key applied.
pub fn load_file(path: Option<std::path::PathBuf>, store: &StoreArgs) -> anyhow::Result<Settings> {
    let mut settings = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading configuration {}", p.display()))?;
            let mut s =
                parse_settings(&text).with_context(|| format!("configuration {}", p.display()))?;
            // A relative source path is relative to the file that names it.
            let dir = p.parent().unwrap_or(Path::new(""));
            for src in &mut s.sources {
                src.path = dir.join(&src.path);
            }
            s
        }
        None => parse_settings("")?,
    };
    if let Some(mode) = store.calendar {
        // `--calendar cup` over a 24x7 configuration: the contract's default hours.
        if mode == CalendarMode::Cup && settings.metrics.calendar == ServiceCalendar::always_open()
        {
            settings.metrics.calendar = ServiceCalendar::default();
        }
        apply_calendar(&mut settings.metrics, mode);
    }
    if let Ok(hex) = std::env::var("NETWAIT_CALLER_KEY") {
        match unhex::<32>(&hex) {
            Some(k) => settings.caller_key = Some(k),
            None => bail!("NETWAIT_CALLER_KEY must be 64 hex digits"),
        }
    }
    Ok(settings)
}

/// What an opened engine will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Ingest,
    /// Ingest, once no other process writes to the store (an aggregator beside a running
    /// one stands by to take over): waits for the data directory's lock, or for the
    /// ClickHouse writer lease.
    Standby,
    Queries,
}

/// How often a standby tries the data directory's lock again.
const STANDBY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the engine on the embedded store of `--data`.
pub fn open_engine(store: &StoreArgs, usage: Use) -> anyhow::Result<(Engine, Pseudonymizer)> {
    let settings = load(store)?;
    if let Some(target) = &store.clickhouse {
        let when_held = match usage {
            Use::Standby => netwait_clickhouse::WhenHeld::Wait,
            Use::Ingest | Use::Queries => netwait_clickhouse::WhenHeld::Refuse,
        };
        // A reader keeps no checkpoints (the writer beside it does).
        let checkpoints = store.checkpoints.as_ref().filter(|_| usage != Use::Queries);
        return super::clickhouse::open_engine(target, settings, when_held, checkpoints);
    }
    let dir: &Path = &store.data;
    let engine = match usage {
        Use::Ingest | Use::Standby => {
            let mut told = false;
            let embedded = loop {
                match EmbeddedStore::open(dir) {
                    Err(StoreError::Locked(_)) if usage == Use::Standby => {
                        if !told {
                            tracing::warn!(
                                data = %dir.display(),
                                "another netwait writes to this data directory: standing by to take over when it stops"
                            );
                            told = true;
                        }
                        std::thread::sleep(STANDBY_POLL);
                    }
                    opened => break Box::new(opened?),
                }
            };
            let secrets = Secrets::load_or_create(dir, settings.caller_key)?;
            Engine::open(embedded, secrets.dedupe, settings.metrics).map(|e| (e, secrets))
        }
        // Queries create nothing: no directory, no lock file, no keys, no log.
        Use::Queries => {
            let embedded = Box::new(EmbeddedStore::open_read_only(dir)?);
            let secrets = Secrets::load(dir, settings.caller_key)?;
            Engine::open_for_queries(embedded, secrets.dedupe, settings.metrics)
                .map(|e| (e, secrets))
        }
    }
    .with_context(|| format!("opening the store in {}", dir.display()))?;
    let (engine, secrets) = engine;
    Ok((engine, Pseudonymizer::new(secrets.caller)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_checked_entry_by_entry() {
        let s = parse_settings(
            "[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\npath = \"/var/log/asterisk/queue_log\"\n[[sources]]\nkind = \"tail\"\nformat = \"ndjson\"\npath = \"events.ndjson\"\n",
        )
        .expect("valid");
        assert_eq!(
            s.sources,
            vec![
                SourceSpec {
                    format: Format::QueueLog,
                    path: "/var/log/asterisk/queue_log".into()
                },
                SourceSpec {
                    format: Format::Ndjson,
                    path: "events.ndjson".into()
                }
            ]
        );
        assert!(parse_settings("").expect("empty").sources.is_empty());
        for (entry, says) in [
            (
                "kind = \"kafka\"\nformat = \"ndjson\"\npath = \"x\"",
                "entry 1: kind \"kafka\"",
            ),
            (
                "format = \"ndjson\"\npath = \"x\"",
                "entry 1: kind is missing",
            ),
            (
                "kind = \"tail\"\nformat = \"cdr\"\npath = \"x\"",
                "entry 1: format \"cdr\"",
            ),
            (
                "kind = \"tail\"\nformat = \"xml\"\npath = \"x\"",
                "entry 1: format \"xml\"",
            ),
            (
                "kind = \"tail\"\npath = \"x\"",
                "entry 1: format is missing",
            ),
            (
                "kind = \"tail\"\nformat = \"queue_log\"",
                "entry 1: path is missing",
            ),
            (
                "kind = \"tail\"\nformat = \"queue_log\"\npath = \"x\"\ncolour = 1",
                "unknown field",
            ),
        ] {
            let Err(e) = parse_settings(&format!("[[sources]]\n{entry}\n")) else {
                panic!("{entry} accepted");
            };
            assert!(format!("{e:#}").contains(says), "{entry}: {e:#}");
        }
        let twice = "[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\npath = \"q\"\n";
        let Err(e) = parse_settings(&twice.repeat(2)) else {
            panic!("the same file twice accepted");
        };
        assert!(
            format!("{e:#}").contains("entry 2: q is followed twice"),
            "{e:#}"
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let s = parse_settings("").expect("empty is defaults");
        assert_eq!(s.metrics, MetricsConfig::default());
        let s = parse_settings(
            "[sla]\nthreshold_s = 120\npolicy = \"offered\"\n[calendar]\nsat = \"closed\"\npatron_sites = [\"Breno\"]\nextra_closures = [\"2019-08-14\"]\n",
        )
        .expect("valid");
        assert_eq!(s.metrics.threshold_ms, 120_000);
        assert_eq!(s.metrics.policy, SlaPolicy::Offered);
        assert_eq!(s.metrics.calendar.week[5], None);
        assert_eq!(s.metrics.calendar.patron_sites, vec![PatronSite::Breno]);
        assert!(parse_settings("[sla]\ntarget = 2").is_err());
        let s = parse_settings("[sla]\nthreshold_s = 139.5\ntarget = 0.3\ngrave_floor = 0.2")
            .expect("valid");
        assert_eq!((s.metrics.threshold_ms, s.metrics.target), (139_500, 0.3));
        for bad in [
            "threshold_s = 0.5",
            "threshold_s = 140.0001",
            "threshold_s = 86401",
            "target = 0.3",
            "target = 0.5\ngrave_floor = 0.5",
            "grave_floor = -0.1",
        ] {
            let Err(e) = parse_settings(&format!("[sla]\n{bad}")) else {
                panic!("{bad} accepted");
            };
            assert!(format!("{e:#}").starts_with("sla."), "{bad}: {e:#}");
        }
        assert!(parse_settings("[sla]\ntypo = 1").is_err());
    }

    #[test]
    fn calendar_mode_and_queue_log_settings() {
        let s = parse_settings("[calendar]\nmode = \"24x7\"").expect("valid");
        assert_eq!(s.metrics.calendar, ServiceCalendar::always_open());
        assert!(parse_settings("[calendar]\nmode = \"always\"").is_err());
        let s = parse_settings(
            "[queue_log]\nannouncement = { in_queue_s = 40 }\nqueue_lines = { \"500\" = \"cup\" }\ndid_lines = { \"7777\" = \"prelievi\" }\ntimezone = \"UTC\"",
        )
        .expect("valid");
        let q = &s.decode.queue_log;
        assert_eq!(q.announcement, Announcement::InQueue(40_000));
        assert_eq!(q.queue_lines["500"], "cup");
        assert_eq!(q.did_lines["7777"], "prelievi");
        assert_eq!(s.decode.timezone, TimeZone::UTC);
        let s = parse_settings("[queue_log]\nannouncement = \"before_queue\"").expect("valid");
        assert_eq!(s.decode.queue_log.announcement, Announcement::BeforeQueue);
        for bad in [
            "announcement = \"inside\"",
            "announcement = { in_queue_s = 601 }",
            "timezone = \"Mars/Olympus\"",
        ] {
            assert!(
                parse_settings(&format!("[queue_log]\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }
}
