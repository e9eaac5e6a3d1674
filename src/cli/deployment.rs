//! Where the figures are kept and which roles a process plays: the store (`--store
//! embedded|clickhouse`, `--clickhouse-url`, `--clickhouse-db`), and `serve`'s role
//! (`--role ingest|aggregator|api|all`, `--kafka`, `--topic`, `--group`). The same keys
//! are read from the configuration and the environment; the command line wins over the
//! environment, which wins over the configuration, which wins over the defaults:
//!
//! ```toml
//! [store]
//! kind = "clickhouse"                    # NETWAIT_STORE; default "embedded"
//! clickhouse_url = "http://127.0.0.1:8123" # NETWAIT_CLICKHOUSE_URL
//! clickhouse_db = "asst_valcamonica"     # NETWAIT_CLICKHOUSE_DB; default "netwait"
//! state_dir = "/var/lib/netwait/state"   # NETWAIT_STATE_DIR: a ClickHouse writer's checkpoints
//! [kafka]
//! brokers = "10.0.0.5:9092"              # NETWAIT_KAFKA
//! topic = "asst-valcamonica"             # NETWAIT_KAFKA_TOPIC
//! group = "netwait-aggregator"           # NETWAIT_KAFKA_GROUP (the default)
//! share_partitions = false               # NETWAIT_SHARE_PARTITIONS: aggregators share the group's partitions
//! [serve]
//! role = "all"                           # NETWAIT_ROLE: ingest, aggregator, api, all
//! ```
//!
//! Two rules keep a command on the store it names. The store's kind is chosen by the
//! command line (`--store`, or `--clickhouse-url` alone), else by `NETWAIT_STORE` (not
//! applied to a command given `--data`, which names an embedded store), else by `[store]
//! kind`; the URL, database, brokers and topic of the environment or the configuration
//! are read only once the kind or the role asks for them. So `NETWAIT_CLICKHOUSE_URL`
//! and `NETWAIT_KAFKA` exported for `deploy/up`'s servers never move a command off its
//! `--data`.

use anyhow::bail;
use netwait_clickhouse::DEFAULT_DATABASE;
use serde::Deserialize;
use std::path::Path;

/// `NETWAIT_STORE`: `embedded` or `clickhouse`.
pub const ENV_STORE: &str = "NETWAIT_STORE";
pub const ENV_CLICKHOUSE_URL: &str = "NETWAIT_CLICKHOUSE_URL";
pub const ENV_CLICKHOUSE_DB: &str = "NETWAIT_CLICKHOUSE_DB";
pub const ENV_ROLE: &str = "NETWAIT_ROLE";
pub const ENV_KAFKA: &str = "NETWAIT_KAFKA";
pub const ENV_TOPIC: &str = "NETWAIT_KAFKA_TOPIC";
pub const ENV_GROUP: &str = "NETWAIT_KAFKA_GROUP";
/// Whether the aggregators of the group share its partitions (`aggregate
/// --share-partitions`): `1`, `true` or `yes`.
pub const ENV_SHARE_PARTITIONS: &str = "NETWAIT_SHARE_PARTITIONS";

/// A switch's value in the environment, read alike by `serve` (here) and by the flags
/// that take one from the environment (`aggregate --share-partitions`, as clap's value
/// parser): a value that is neither on nor off is refused, not taken for off.
pub fn switch(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "`{value}` is neither on nor off (true/false, 1/0, yes/no, on/off)"
        )),
    }
}

/// The aggregators' consumer group when none is given.
pub const DEFAULT_GROUP: &str = "netwait-aggregator";

/// Where the figures are kept.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The data directory of `--data`.
    Embedded,
    /// A ClickHouse database (`--clickhouse-url`, `--clickhouse-db`).
    #[value(name = "clickhouse")]
    ClickHouse,
}

/// What a `serve` process does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes pushes and followed logs, publishes them to Kafka.
    Ingest,
    /// Consumes the topic into the store (what `netwait aggregate` does).
    Aggregator,
    /// Serves the Stats API from ClickHouse.
    Api,
    /// All three in one process (on the embedded store without Kafka: pushes are
    /// committed to it directly).
    All,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Aggregator => "aggregator",
            Self::Api => "api",
            Self::All => "all",
        }
    }
}

/// `[store]`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StoreToml {
    kind: Option<String>,
    clickhouse_url: Option<String>,
    clickhouse_db: Option<String>,
    state_dir: Option<std::path::PathBuf>,
}

/// `[kafka]`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaToml {
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    share_partitions: Option<bool>,
}

/// `[serve]`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServeToml {
    role: Option<String>,
}

/// The configuration's keys of this module.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct Deployment {
    #[serde(default)]
    store: StoreToml,
    #[serde(default)]
    kafka: KafkaToml,
    #[serde(default)]
    serve: ServeToml,
}

impl Deployment {
    /// `[store] state_dir`: where a writer on the ClickHouse store keeps its checkpoints.
    pub fn state_dir(&self) -> Option<&Path> {
        self.store.state_dir.as_deref()
    }

    /// The keys of configuration file `path` (none without one). Only these sections are
    /// read here; the rest of the file is checked by `config::load`.
    pub fn read(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading configuration {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| e.context(format!("configuration {}", path.display())))
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

/// A value of the environment (`None` when unset or empty).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_value<T: clap::ValueEnum>(text: &str, what: &str) -> anyhow::Result<T> {
    T::from_str(text.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        anyhow::anyhow!("{what} {text:.32?}: use {}", names.join(", "))
    })
}

/// The store flags of a command as given on its command line.
#[derive(Debug, Clone, Default)]
pub struct StoreFlags<'a> {
    pub kind: Option<StoreKind>,
    pub url: Option<&'a str>,
    pub db: Option<&'a str>,
    /// `--data` was on the command line.
    pub data_given: bool,
}

/// The ClickHouse store chosen, by URL and database (`None`: the embedded store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseChoice {
    pub url: String,
    pub database: String,
}

/// The store a command uses (see the module doc for the rules).
pub fn store(
    flags: &StoreFlags<'_>,
    file: &Deployment,
    env: Env<'_>,
) -> anyhow::Result<Option<ClickHouseChoice>> {
    let kind = match (flags.kind, flags.url) {
        (Some(StoreKind::Embedded), Some(_)) => {
            bail!("--store embedded and --clickhouse-url: choose one store")
        }
        (Some(kind), _) => kind,
        (None, Some(_)) => StoreKind::ClickHouse,
        (None, None) => match (
            env(ENV_STORE).filter(|_| !flags.data_given),
            &file.store.kind,
        ) {
            (Some(text), _) => parse_value(&text, ENV_STORE)?,
            (None, Some(text)) => parse_value(text, "[store] kind")?,
            (None, None) => StoreKind::Embedded,
        },
    };
    if kind == StoreKind::Embedded {
        if flags.db.is_some() {
            bail!("--clickhouse-db goes with the ClickHouse store (--store clickhouse)");
        }
        return Ok(None);
    }
    let Some(url) = flags
        .url
        .map(str::to_owned)
        .or_else(|| env(ENV_CLICKHOUSE_URL))
        .or_else(|| file.store.clickhouse_url.clone())
    else {
        bail!(
            "the ClickHouse store needs its URL: --clickhouse-url URL (or {ENV_CLICKHOUSE_URL}, or [store] clickhouse_url)"
        );
    };
    let database = flags
        .db
        .map(str::to_owned)
        .or_else(|| env(ENV_CLICKHOUSE_DB))
        .or_else(|| file.store.clickhouse_db.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    Ok(Some(ClickHouseChoice { url, database }))
}

/// `serve`'s role flags as given on its command line.
#[derive(Debug, Clone, Default)]
pub struct RoleFlags<'a> {
    pub role: Option<Role>,
    pub kafka: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub group: Option<&'a str>,
    /// `--listen` was given.
    pub listen: bool,
    /// `--http-listen` was given.
    pub http_listen: bool,
}

/// Where a role reads or writes its events in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaChoice {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// The aggregators of the group share its partitions.
    pub share_partitions: bool,
}

/// What a `serve` process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub role: Role,
    /// For the api role, the topic its live state follows, if any; `None` for `all` on
    /// the embedded store (pushes are committed to it directly, as `serve --data` always
    /// did).
    pub kafka: Option<KafkaChoice>,
}

/// `serve`'s role and its Kafka settings, on the store chosen (`clickhouse`), or a clear
/// error naming the flags that do not go together.
pub fn plan(
    flags: &RoleFlags<'_>,
    clickhouse: bool,
    file: &Deployment,
    env: Env<'_>,
) -> anyhow::Result<Plan> {
    let k = &file.kafka;
    let role = match (flags.role, env(ENV_ROLE), &file.serve.role) {
        (Some(role), _, _) => role,
        (None, Some(text), _) => parse_value(&text, ENV_ROLE)?,
        (None, None, Some(text)) => parse_value(text, "[serve] role")?,
        // What the flags implied before roles were named: ClickHouse alone is the api
        // role, with a topic all three; `--kafka` on the embedded store is the ingest role.
        (None, None, None) if clickhouse => {
            let topic = flags.topic.is_some() || env(ENV_TOPIC).is_some() || k.topic.is_some();
            if flags.kafka.is_some() || topic {
                Role::All
            } else {
                Role::Api
            }
        }
        (None, None, None) if flags.kafka.is_some() || k.topic.is_some() => Role::Ingest,
        (None, None, None) => Role::All,
    };
    let name = role.name();
    let kafka_flags = flags.kafka.is_some() || flags.topic.is_some() || flags.group.is_some();
    match role {
        Role::Api => {
            if flags.group.is_some() {
                bail!(
                    "--group is the aggregators' consumer group: not with --role api (its live state follows the topic outside any group)"
                );
            }
            if !clickhouse {
                bail!(
                    "--role api serves the figures of a ClickHouse database: give --store clickhouse --clickhouse-url URL (`serve --data DIR` alone serves an embedded store)"
                );
            }
            // The live state follows the topic when one is named, on the command line or
            // in the configuration (not from the environment alone: an exported
            // NETWAIT_KAFKA does not turn it on).
            let live = match (flags.kafka, flags.topic.or(k.topic.as_deref())) {
                (None, None) => None,
                (kafka, Some(topic)) => {
                    let Some(brokers) = kafka
                        .map(str::to_owned)
                        .or_else(|| env(ENV_KAFKA))
                        .or_else(|| k.brokers.clone())
                    else {
                        bail!(
                            "--role api follows --topic {topic} for its live state: it needs --kafka BROKERS (or {ENV_KAFKA}, or [kafka] brokers)"
                        );
                    };
                    Some(KafkaChoice {
                        brokers,
                        topic: topic.to_owned(),
                        group: DEFAULT_GROUP.to_owned(),
                        share_partitions: false,
                    })
                }
                (Some(_), None) => bail!(
                    "--role api follows a topic for its live state: --kafka needs --topic T (or [kafka] topic)"
                ),
            };
            return Ok(Plan { role, kafka: live });
        }
        Role::All if !clickhouse => {
            if kafka_flags || k.topic.is_some() {
                bail!(
                    "--role all with Kafka needs --store clickhouse: a data directory has one writer, so on the embedded store run `serve --role ingest --data DIR1` and `serve --role aggregator --data DIR2` (or `serve --data DIR` alone, without Kafka)"
                );
            }
            return Ok(Plan { role, kafka: None });
        }
        Role::Ingest if flags.group.is_some() => {
            bail!(
                "--group is the aggregators' consumer group: not with --role ingest (it publishes)"
            )
        }
        Role::Aggregator if flags.http_listen => {
            bail!("--http-listen takes pushes: not with --role aggregator (use ingest or all)")
        }
        _ => {}
    }
    let Some(brokers) = flags
        .kafka
        .map(str::to_owned)
        .or_else(|| env(ENV_KAFKA))
        .or_else(|| k.brokers.clone())
    else {
        bail!("--role {name} needs --kafka BROKERS (or {ENV_KAFKA}, or [kafka] brokers)");
    };
    let Some(topic) = flags
        .topic
        .map(str::to_owned)
        .or_else(|| env(ENV_TOPIC))
        .or_else(|| k.topic.clone())
    else {
        bail!("--role {name} needs --topic T (or {ENV_TOPIC}, or [kafka] topic)");
    };
    let group = flags
        .group
        .map(str::to_owned)
        .or_else(|| env(ENV_GROUP))
        .or_else(|| k.group.clone())
        .unwrap_or_else(|| DEFAULT_GROUP.to_owned());
    let share_partitions = match env(ENV_SHARE_PARTITIONS) {
        Some(v) => switch(&v).map_err(|e| anyhow::anyhow!("{ENV_SHARE_PARTITIONS}: {e}"))?,
        None => k.share_partitions.unwrap_or(false),
    };
    if role == Role::Aggregator && flags.listen {
        bail!(
            "--listen serves gRPC: --role aggregator serves none (it consumes the topic into the store; use api or all)"
        );
    }
    Ok(Plan {
        role,
        kafka: Some(KafkaChoice {
            brokers,
            topic,
            group,
            share_partitions,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// What `deploy/up` exports (and CI has while every test runs).
    const DEPLOYED: &[(&str, &str)] = &[
        (ENV_CLICKHOUSE_URL, "http://127.0.0.1:18123"),
        (ENV_KAFKA, "127.0.0.1:19092"),
    ];

    fn file(text: &str) -> Deployment {
        Deployment::parse(text).expect("valid")
    }

    #[test]
    fn the_servers_exported_never_move_a_command_off_its_data() {
        let env = env_of(DEPLOYED);
        let none = Deployment::default();
        for data_given in [false, true] {
            let flags = StoreFlags {
                data_given,
                ..StoreFlags::default()
            };
            assert_eq!(store(&flags, &none, &env).expect("embedded"), None);
            let plan = plan(&RoleFlags::default(), false, &none, &env).expect("plain serve");
            assert_eq!(
                plan,
                Plan {
                    role: Role::All,
                    kafka: None
                }
            );
        }
        // Nor does NETWAIT_STORE, once --data is given.
        let env = env_of(&[
            (ENV_STORE, "clickhouse"),
            (ENV_CLICKHOUSE_URL, "http://127.0.0.1:18123"),
        ]);
        let given = StoreFlags {
            data_given: true,
            ..StoreFlags::default()
        };
        assert_eq!(store(&given, &none, &env).expect("embedded"), None);
        let chosen = store(&StoreFlags::default(), &none, &env).expect("clickhouse");
        assert_eq!(
            chosen,
            Some(ClickHouseChoice {
                url: "http://127.0.0.1:18123".into(),
                database: DEFAULT_DATABASE.into()
            })
        );
    }

    #[test]
    fn command_line_then_environment_then_file_then_default() {
        let f = file(
            "[store]\nkind = \"clickhouse\"\nclickhouse_url = \"http://file:8123\"\nclickhouse_db = \"file_db\"\n[kafka]\nbrokers = \"file:9092\"\ntopic = \"file-topic\"\ngroup = \"file-group\"\n[serve]\nrole = \"aggregator\"\n",
        );
        let no_env = env_of(&[]);
        let env = env_of(&[
            (ENV_CLICKHOUSE_URL, "http://env:8123"),
            (ENV_CLICKHOUSE_DB, "env_db"),
            (ENV_KAFKA, "env:9092"),
            (ENV_TOPIC, "env-topic"),
            (ENV_GROUP, "env-group"),
            (ENV_ROLE, "ingest"),
        ]);
        let choice = |flags: &StoreFlags<'_>, env: Env<'_>| store(flags, &f, env).expect("ok");
        let ch = |url: &str, db: &str| {
            Some(ClickHouseChoice {
                url: url.into(),
                database: db.into(),
            })
        };
        assert_eq!(
            choice(&StoreFlags::default(), &no_env),
            ch("http://file:8123", "file_db")
        );
        assert_eq!(
            choice(&StoreFlags::default(), &env),
            ch("http://env:8123", "env_db")
        );
        let flags = StoreFlags {
            url: Some("http://cli:8123"),
            db: Some("cli_db"),
            ..StoreFlags::default()
        };
        assert_eq!(choice(&flags, &env), ch("http://cli:8123", "cli_db"));
        // The configuration's kind applies to a command given --data (only the
        // environment's does not); --store embedded on the command line wins over it.
        let given = StoreFlags {
            data_given: true,
            ..StoreFlags::default()
        };
        assert_eq!(choice(&given, &env), ch("http://env:8123", "env_db"));
        let embedded = StoreFlags {
            kind: Some(StoreKind::Embedded),
            ..StoreFlags::default()
        };
        assert_eq!(choice(&embedded, &env), None);

        let kafka = |brokers: &str, topic: &str, group: &str| {
            Some(KafkaChoice {
                brokers: brokers.into(),
                topic: topic.into(),
                group: group.into(),
                share_partitions: false,
            })
        };
        let p = plan(&RoleFlags::default(), true, &f, &no_env).expect("file");
        assert_eq!(p.role, Role::Aggregator);
        assert_eq!(p.kafka, kafka("file:9092", "file-topic", "file-group"));
        let p = plan(&RoleFlags::default(), true, &f, &env).expect("env");
        assert_eq!(p.role, Role::Ingest);
        assert_eq!(p.kafka, kafka("env:9092", "env-topic", "env-group"));
        let flags = RoleFlags {
            role: Some(Role::Aggregator),
            kafka: Some("cli:9092"),
            topic: Some("cli-topic"),
            group: Some("cli-group"),
            listen: false,
            http_listen: false,
        };
        let p = plan(&flags, true, &f, &env).expect("cli");
        assert_eq!(p.role, Role::Aggregator);
        assert_eq!(p.kafka, kafka("cli:9092", "cli-topic", "cli-group"));
        // Defaults: the group, the database.
        let p = plan(
            &RoleFlags {
                role: Some(Role::All),
                ..RoleFlags::default()
            },
            true,
            &file("[kafka]\nbrokers = \"b:9092\"\ntopic = \"t\""),
            &no_env,
        )
        .expect("defaults");
        assert_eq!(p.kafka, kafka("b:9092", "t", DEFAULT_GROUP));
    }

    #[test]
    fn sharing_partitions_is_a_switch_the_environment_sets_or_refuses() {
        let f = file("[kafka]\nbrokers = \"b:9092\"\ntopic = \"t\"\nshare_partitions = true");
        let shared = |env: &dyn Fn(&str) -> Option<String>| {
            plan(&RoleFlags::default(), true, &f, env).map(|p| p.kafka.map(|k| k.share_partitions))
        };
        assert_eq!(shared(&env_of(&[])).expect("file"), Some(true));
        assert_eq!(
            shared(&env_of(&[(ENV_SHARE_PARTITIONS, "Off")])).expect("env"),
            Some(false)
        );
        let e = shared(&env_of(&[(ENV_SHARE_PARTITIONS, "maybe")])).expect_err("refused");
        assert!(
            e.to_string().contains("NETWAIT_SHARE_PARTITIONS: `maybe`"),
            "{e}"
        );
        for (v, on) in [
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("0", false),
            ("no", false),
        ] {
            assert_eq!(switch(v), Ok(on), "{v}");
        }
        assert!(switch("").is_err());
    }

    #[test]
    fn roles_default_to_what_the_flags_implied() {
        let none = Deployment::default();
        let no_env = env_of(&[]);
        let role = |flags: RoleFlags<'_>, clickhouse| {
            plan(&flags, clickhouse, &none, &no_env)
                .expect("valid")
                .role
        };
        let kafka = || RoleFlags {
            kafka: Some("b:9092"),
            topic: Some("t"),
            ..RoleFlags::default()
        };
        assert_eq!(role(RoleFlags::default(), false), Role::All);
        assert_eq!(role(kafka(), false), Role::Ingest);
        assert_eq!(role(RoleFlags::default(), true), Role::Api);
        assert_eq!(role(kafka(), true), Role::All);
    }

    #[test]
    fn combinations_that_make_no_sense_name_their_flags() {
        let none = Deployment::default();
        let no_env = env_of(&[]);
        let fails = |flags: RoleFlags<'_>, clickhouse: bool, says: &str| {
            let Err(e) = plan(&flags, clickhouse, &none, &no_env) else {
                panic!("{flags:?} accepted");
            };
            assert!(e.to_string().contains(says), "{flags:?}: {e}");
        };
        let with = |role, kafka: Option<&'static str>| RoleFlags {
            role: Some(role),
            kafka,
            topic: kafka.map(|_| "t"),
            ..RoleFlags::default()
        };
        fails(
            RoleFlags {
                group: Some("g"),
                ..with(Role::Api, Some("b:9092"))
            },
            true,
            "not with --role api",
        );
        fails(
            RoleFlags {
                topic: None,
                ..with(Role::Api, Some("b:9092"))
            },
            true,
            "--kafka needs --topic",
        );
        fails(with(Role::Api, None), false, "--store clickhouse");
        fails(with(Role::All, Some("b:9092")), false, "--store clickhouse");
        fails(with(Role::Aggregator, None), true, "needs --kafka BROKERS");
        fails(
            RoleFlags {
                topic: None,
                ..with(Role::Ingest, Some("b:9092"))
            },
            false,
            "needs --topic T",
        );
        fails(
            RoleFlags {
                group: Some("g"),
                ..with(Role::Ingest, Some("b:9092"))
            },
            false,
            "--group",
        );
        fails(
            RoleFlags {
                http_listen: true,
                ..with(Role::Aggregator, Some("b:9092"))
            },
            true,
            "--http-listen",
        );
        fails(
            RoleFlags {
                listen: true,
                ..with(Role::Aggregator, Some("b:9092"))
            },
            true,
            "--listen serves gRPC",
        );
        let env = env_of(&[]);
        let flags = StoreFlags {
            kind: Some(StoreKind::Embedded),
            url: Some("http://x"),
            ..StoreFlags::default()
        };
        assert!(store(&flags, &none, &env).is_err());
        let flags = StoreFlags {
            db: Some("d"),
            ..StoreFlags::default()
        };
        assert!(store(&flags, &none, &env).is_err());
        let flags = StoreFlags {
            kind: Some(StoreKind::ClickHouse),
            ..StoreFlags::default()
        };
        let Err(e) = store(&flags, &none, &env) else {
            panic!("no URL accepted");
        };
        assert!(e.to_string().contains("--clickhouse-url URL"), "{e}");
        assert!(Deployment::parse("[store]\ncolour = 1").is_err());
        let bad = file("[store]\nkind = \"mysql\"");
        assert!(store(&StoreFlags::default(), &bad, &env).is_err());
    }
}
