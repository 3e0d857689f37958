//! Retention rules for run directories (`retention:` in a job spec or in
//! `.lily/config.yaml`, and `lily jobs prune`): plain data, parsed here,
//! applied by the run store (`runs::prune_job`).

use chrono::TimeDelta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which finished runs to keep. A run directory is removed only when no
/// rule keeps it: with `keep_last` the newest N run directories of the job
/// are kept, with `older_than` every run started less than that long ago is
/// kept. Neither set keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// At least 1 in a file (`keep_last: 0` would remove the run that just
    /// finished); `lily jobs prune --keep-last 0` may ask for it by hand.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de_keep_last")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<usize>,
    /// `<n>d`, `<n>h`, `<n>m` or `<n>s` (`30d`, `12h`, `90m`).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "ser_age", deserialize_with = "de_age")]
    #[schemars(with = "Option<String>")]
    pub older_than: Option<Age>,
}

impl Retention {
    /// Whether the rule prunes anything at all.
    pub fn is_set(&self) -> bool {
        self.keep_last.is_some() || self.older_than.is_some()
    }
}

/// A duration written `<n>d`, `<n>h`, `<n>m` or `<n>s` (`30d`, `12h`, `90m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    pub n: u64,
    pub unit: char,
}

impl Age {
    pub fn parse(s: &str) -> Result<Age, String> {
        let s = s.trim();
        let bad = || format!("invalid duration {s:?}: expected a whole number and a unit d, h, m or s (e.g. 30d, 12h, 90m)");
        let unit = s.chars().last().ok_or_else(bad)?;
        if !matches!(unit, 'd' | 'h' | 'm' | 's') {
            return Err(bad());
        }
        let n = &s[..s.len() - 1];
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = n.parse().map_err(|_| bad())?;
        let age = Age { n, unit };
        age.delta().ok_or_else(|| format!("duration {s:?} is too long"))?;
        Ok(age)
    }

    /// The duration, `None` when it does not fit.
    pub fn delta(&self) -> Option<TimeDelta> {
        let secs_per = match self.unit {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            _ => 1,
        };
        let secs = i64::try_from(self.n).ok()?.checked_mul(secs_per)?;
        TimeDelta::try_seconds(secs)
    }
}

impl std::fmt::Display for Age {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.n, self.unit)
    }
}

impl std::str::FromStr for Age {
    type Err = String;
    fn from_str(s: &str) -> Result<Age, String> {
        Age::parse(s)
    }
}

fn ser_age<S: Serializer>(v: &Option<Age>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_none(),
    }
}

fn de_keep_last<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "keep_last must be at least 1 (0 would remove every run, the one that just finished too)",
        )),
        n => Ok(Some(n)),
    }
}

fn de_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Age>, D::Error> {
    let s = String::deserialize(d)?;
    Age::parse(&s).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(Age::parse("30d").expect("30d").delta(), Some(TimeDelta::days(30)));
        assert_eq!(Age::parse("12h").expect("12h").delta(), Some(TimeDelta::hours(12)));
        assert_eq!(Age::parse("90m").expect("90m").delta(), Some(TimeDelta::minutes(90)));
        assert_eq!(Age::parse("45s").expect("45s").delta(), Some(TimeDelta::seconds(45)));
        for bad in ["", "d", "30", "3.5d", "-1d", "30w", "1e3d", "99999999999999999999d"] {
            assert!(Age::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn retention_reads_from_yaml() {
        let r: Retention = serde_norway::from_str("{keep_last: 100, older_than: 30d}").expect("parse");
        assert_eq!(r.keep_last, Some(100));
        assert_eq!(r.older_than.and_then(|a| a.delta()), Some(TimeDelta::days(30)));
        assert!(serde_norway::from_str::<Retention>("{older_than: soon}").is_err());
        assert!(serde_norway::from_str::<Retention>("{keep: 3}").is_err());
        assert!(serde_norway::from_str::<Retention>("{keep_last: 0}").is_err());
        assert_eq!(serde_norway::from_str::<Retention>("{}").expect("empty"), Retention::default());
        assert!(!Retention::default().is_set());
    }
}
