//! The file as written: serde structures that mirror the TOML tables key for key. Every table
//! denies unknown keys, so a typo is an error with its line, never a silently ignored setting.
//! Values that need the rest of the file to be judged (a server index, a fault's parameters)
//! stay loose here and are checked in [`super::validate`].

use std::fmt;

use legate_core::duration;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::model::{Checker, Direction, FaultKind, PartitionShape, Plant, ReadMode, Target};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: String,
    pub description: String,
    pub topology: RawTopology,
    pub clocks: Option<RawClocks>,
    pub workloads: RawWorkloads,
    pub nemesis: Option<RawNemesis>,
    pub phases: RawPhases,
    pub checkers: Vec<Checker>,
    pub plant: Option<RawPlant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    pub servers: u32,
    pub bootstrap: Option<String>,
    pub datacenters: Option<RawDatacenters>,
    pub wan_latency: Option<GoDuration>,
}

/// `datacenters = 3` (named `dc1`, `dc2`, `dc3`) or `datacenters = ["east", "west"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawDatacenters {
    Count(i64),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for RawDatacenters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DatacentersVisitor)
    }
}

struct DatacentersVisitor;

impl<'de> Visitor<'de> for DatacentersVisitor {
    type Value = RawDatacenters;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of datacenters or a list of datacenter names")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawDatacenters, E> {
        Ok(RawDatacenters::Count(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawDatacenters, E> {
        Ok(RawDatacenters::Count(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawDatacenters, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<String>()? {
            names.push(name);
        }
        Ok(RawDatacenters::Names(names))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClocks {
    pub offset_max: Option<GoDuration>,
    pub drift_max_ppm: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkloads {
    pub kv: Option<RawKv>,
    pub lock: Option<RawLock>,
    pub service: Option<RawService>,
    pub txn: Option<RawTxn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKv {
    pub keys: u32,
    pub clients: u32,
    pub rate_per_s: u32,
    pub mix: Option<RawKvMix>,
    pub read_mode: Option<ReadMode>,
    pub remote: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKvMix {
    pub read: Option<u32>,
    pub write: Option<u32>,
    pub cas: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLock {
    pub locks: u32,
    pub clients: u32,
    pub rate_per_s: u32,
    pub session_ttl: Option<GoDuration>,
    pub lock_delay: Option<GoDuration>,
    pub hold: Option<GoDuration>,
    pub abandon: Option<f64>,
    pub client: Option<super::model::LockClient>,
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub services: u32,
    pub instances: u32,
    pub clients: u32,
    pub rate_per_s: u32,
    pub flap_interval: GoDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTxn {
    pub keys: u32,
    pub clients: u32,
    pub rate_per_s: u32,
    pub ops_per_txn: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawMode {
    None,
    Random,
    Schedule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNemesis {
    pub mode: RawMode,
    // mode = "random"
    pub faults: Option<Vec<FaultKind>>,
    pub interval: Option<GoDuration>,
    pub probability: Option<f64>,
    pub duration_max: Option<GoDuration>,
    pub active_max: Option<u32>,
    pub shapes: Option<Vec<PartitionShape>>,
    pub torn_writes: Option<bool>,
    pub bit_flips: Option<bool>,
    // mode = "schedule"
    pub schedule: Option<Vec<RawScheduled>>,
}

/// One `[[nemesis.schedule]]` entry: every parameter of every fault kind, each optional; which
/// ones a kind takes is checked against `fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduled {
    pub at: GoDuration,
    pub fault: FaultKind,
    pub duration: Option<GoDuration>,
    pub target: Option<Target>,
    pub shape: Option<PartitionShape>,
    pub direction: Option<Direction>,
    pub torn_write: Option<bool>,
    pub bit_flip: Option<bool>,
    pub offset: Option<SignedGoDuration>,
    pub drift_ppm: Option<i32>,
    pub probability: Option<f64>,
    pub latency_max: Option<GoDuration>,
    pub datacenter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPhases {
    pub safety: GoDuration,
    pub liveness: GoDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlant {
    pub bug: Option<Plant>,
    pub caught_by: Option<Checker>,
    pub seed_budget: Option<u32>,
}

/// A Go duration string (`"30s"`, `"500ms"`, `"1m30s"`), read into nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GoDuration(pub u64);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor { signed: false }).map(|ns| GoDuration(ns as u64))
    }
}

/// A Go duration string that may start with `-` (a clock stepped back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignedGoDuration(pub i64);

impl<'de> Deserialize<'de> for SignedGoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor { signed: true }).map(|ns| SignedGoDuration(ns as i64))
    }
}

/// Reads a duration string; an unsigned result fits `u64`, a signed one `i64` (as an `i128`).
struct DurationVisitor {
    signed: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.signed {
            f.write_str("a duration string such as \"250ms\" or \"-2s\"")
        } else {
            f.write_str("a duration string such as \"30s\" or \"500ms\"")
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<i128, E> {
        let (negative, magnitude) = match text.trim().strip_prefix('-') {
            Some(rest) if self.signed => (true, rest),
            _ => (false, text),
        };
        let ns = duration::parse_ns(magnitude).map_err(|e| {
            let e = match e {
                // Name the whole text, sign included.
                duration::DurationError::Invalid(_) => format!("invalid duration {text:?}"),
                e => e.to_string(),
            };
            E::custom(format_args!("{e} (write a Go duration such as \"30s\" or \"500ms\")"))
        })?;
        if !self.signed {
            return Ok(i128::from(ns));
        }
        let ns = i64::try_from(ns).map_err(|_| E::custom(format_args!("duration {text:?} out of range")))?;
        Ok(if negative { -i128::from(ns) } else { i128::from(ns) })
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TargetVisitor)
    }
}

/// A target is a word (`"leader"`, `"follower"`, `"random"`) or a 0-based server index.
struct TargetVisitor;

impl Visitor<'_> for TargetVisitor {
    type Value = Target;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"leader\", \"follower\", \"random\" or a 0-based server index")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Target, E> {
        match text {
            "leader" => Ok(Target::Leader),
            "follower" => Ok(Target::Follower),
            "random" => Ok(Target::Random),
            _ => Err(E::invalid_value(de::Unexpected::Str(text), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Target, E> {
        u32::try_from(n).map(Target::Node).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Target, E> {
        u32::try_from(n).map(Target::Node).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
    }
}
