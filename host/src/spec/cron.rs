//! Cron triggers: a validated cron expression in an IANA time zone, and the
//! instants at which it fires.
//!
//! Parsing and the wall clock search are done by [`croner`]; this module
//! fixes the accepted syntax, turns errors into one-line reasons, and pins
//! down the daylight saving time (DST) behaviour described on
//! [`CronSchedule`].
//!
//! # Accepted syntax
//!
//! * 5 fields: `minute hour day-of-month month day-of-week` (seconds are 0).
//! * 6 fields: a *leading* seconds field, then the 5 standard fields.
//! * The macros `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//!   `@yearly` and `@annually` (case-insensitive, nothing else on the line).
//! * 7 fields (a trailing year) are **rejected**, so a 6-field expression is
//!   never ambiguous and expressions stay portable to ordinary crontabs.
//!
//! Within a field the usual `*`, `a-b`, `*/n`, `a-b/n` and `a,b,c` forms work,
//! as do month and weekday names (`JAN`, `MON`). Day-of-week takes 0-7, where
//! both 0 and 7 are Sunday. Day-of-month and day-of-week combine with OR as in
//! Vixie cron. croner's extensions (`L`, `W`, `#`, `?`, a leading `+` on
//! day-of-week for AND) are accepted as croner documents them. A bare start
//! with a step (`0/10`, `/10`) is rejected; write `*/10`. An expression that
//! never fires (such as `0 0 30 2 *`) is rejected.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

/// The macros and the 5-field expressions they stand for.
const MACROS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Name and allowed numeric range of one cron field.
struct FieldSpec {
    name: &'static str,
    min: u64,
    max: u64,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
};

/// The five standard fields, in order.
const STANDARD_FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
    },
    FieldSpec { name: "hour", min: 0, max: 23 },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
    },
];

/// Most distinct times of day a schedule of plain values may name and still
/// get fixed-time DST handling per time (see [`CronSchedule`]). Beyond this
/// the schedule is handled as croner handles it.
const MAX_FIXED_TIMES: usize = 256;

/// How many times one search is retried when croner gives up on it (see
/// [`next_of`]).
const MAX_SEARCH_RETRIES: usize = 48;

/// A validated cron trigger in an IANA time zone.
///
/// Fields are matched against the wall clock of the time zone; fire times are
/// returned as UTC instants.
///
/// # Daylight saving time
///
/// A schedule is a *fixed-time* schedule when its second, minute and hour
/// fields each hold plain numbers only (`30 2 * * *`, `0,30 2,14 * * *`); it
/// is an *interval* schedule when any of them uses `*`, a step `/` or a range
/// `-` (`*/15 * * * *`, `0 * * * *`, `0 9-17 * * *`). The macros follow their
/// expansion: `@hourly` is an interval schedule, the others are fixed-time.
///
/// 1. A fixed time inside a skipped (spring-forward) interval fires once, at
///    the first valid instant after the gap (New York 02:30 on a
///    spring-forward day fires at 03:00 EDT). Several fixed times inside the
///    same gap collapse into that single fire.
/// 2. A fixed time inside a repeated (fall-back) interval fires once, on the
///    first pass (New York 01:30 fires at 01:30 EDT, not again at 01:30 EST).
/// 3. An interval schedule fires on every matching wall clock time that
///    exists: in both passes of a repeated interval, and not at all for wall
///    clock times inside a gap (real elapsed time between fires is kept).
/// 4. Fire times are strictly increasing and never repeat; searches are
///    strictly after the instant given.
///
/// croner 4 implements rules 1–3 itself, but it treats only a *single* value
/// in each of the second, minute and hour fields as a fixed time: a list such
/// as `30 2,14 * * *` would be an interval schedule to croner, so 02:30 would
/// be dropped on a spring-forward day and 01:30 would fire twice on a
/// fall-back day. This module corrects that by splitting a list schedule into
/// one single-time croner schedule per time of day (up to
/// [`MAX_FIXED_TIMES`]) and merging their fire times, removing duplicates.
/// Rule 4 is enforced here whatever croner returns: every result is checked
/// to be strictly after the search start and the merge only moves forward.
///
/// Historic gaps longer than two hours (such as Pacific/Apia skipping
/// 2011-12-30) exceed croner's gap search; the search is then resumed past the
/// gap, and a fixed time inside such a gap is skipped rather than moved.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The expression as given, trimmed.
    expr: String,
    tz: Tz,
    /// The whole expression, parsed.
    cron: Cron,
    /// For a fixed-time schedule naming more than one time of day: one
    /// single-time schedule per time of day. Empty otherwise.
    fixed_times: Vec<Cron>,
}

/// One fire time, in UTC and in the schedule's local time (with offset).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FireTime {
    /// The instant, in UTC.
    pub utc: DateTime<Utc>,
    /// RFC 3339 with the local offset, e.g. `2026-03-08T03:00:00-04:00`.
    pub local: String,
    /// The IANA name of the schedule's time zone.
    pub timezone: String,
}

/// Why a schedule was refused; its text is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression '{expr}': {reason}")]
    Expression { expr: String, reason: String },
    #[error("time zone is empty (expected an IANA name such as 'Europe/Berlin')")]
    EmptyZone,
    #[error("unknown IANA time zone '{0}'")]
    UnknownZone(String),
}

impl CronSchedule {
    /// Accepts: standard 5-field crontab (`*/15 * * * *`), 6 fields with
    /// LEADING seconds (`0 */5 * * * *`), and the macros `@hourly` `@daily`
    /// `@midnight` `@weekly` `@monthly` `@yearly` `@annually`.
    ///
    /// Rejects anything else, including 7 fields (a year field is not
    /// supported), an expression that never fires, an empty expression, and
    /// an empty or unknown IANA time zone (names are case-sensitive, as in the
    /// tz database). The error is a one-line human reason, e.g.
    /// `invalid cron expression '61 * * * *': minute value 61 out of range (0-59)`
    /// or `unknown IANA time zone 'Mars/Base'`.
    pub fn parse(expr: &str, timezone: &str) -> Result<CronSchedule, ScheduleError> {
        let expr = expr.trim();
        let invalid = |reason: &str| ScheduleError::Expression {
            expr: expr.to_string(),
            reason: reason.to_string(),
        };
        if expr.is_empty() {
            return Err(invalid("expression is empty"));
        }

        let zone = timezone.trim();
        if zone.is_empty() {
            return Err(ScheduleError::EmptyZone);
        }
        let tz: Tz = zone.parse().map_err(|_| ScheduleError::UnknownZone(zone.to_string()))?;

        let body = if expr.starts_with('@') {
            MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(expr))
                .map(|(_, expansion)| *expansion)
                .ok_or_else(|| {
                    invalid(
                        "unknown macro (expected one of @hourly, @daily, @midnight, @weekly, \
                         @monthly, @yearly, @annually)",
                    )
                })?
        } else {
            expr
        };

        let fields: Vec<&str> = body.split_whitespace().collect();
        let specs: Vec<&FieldSpec> = match fields.len() {
            5 => STANDARD_FIELDS.iter().collect(),
            6 => std::iter::once(&SECOND).chain(STANDARD_FIELDS.iter()).collect(),
            7 => {
                return Err(invalid(
                    "7 fields (with a year) are not supported; expected 5 fields (minute hour \
                     day-of-month month day-of-week) or 6 with a leading seconds field",
                ));
            }
            n => {
                return Err(invalid(&format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a \
                     leading seconds field, got {n}"
                )));
            }
        };

        for (field, spec) in fields.iter().zip(&specs) {
            if let Some(value) = out_of_range_value(field, spec) {
                return Err(invalid(&format!("{} value {value} out of range ({}-{})", spec.name, spec.min, spec.max)));
            }
        }

        let parser = parser();
        let cron = parser
            .parse(&fields.join(" "))
            .map_err(|err| invalid(&locate_error(&parser, &fields, &specs, &err)))?;

        // A search from a fixed reference point finds the first fire time of
        // any expression that can fire (without a year field, the Gregorian
        // calendar repeats every 400 years); croner gives up at year 5000
        // otherwise.
        let reference = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&tz);
        if cron.find_next_occurrence(&reference, false).is_err() {
            return Err(invalid("never fires (no date matches every field)"));
        }

        let fixed_times = split_fixed_times(&parser, &cron, &fields).map_err(|err| invalid(&clean_reason(&err)))?;

        Ok(CronSchedule {
            expr: expr.to_string(),
            tz,
            cron,
            fixed_times,
        })
    }

    /// The expression as given (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The schedule's time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fires(after).next()
    }

    /// The next `n` fire times strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<FireTime> {
        if n == 0 {
            return Vec::new();
        }
        self.fires(after).take(n).map(|utc| self.fire_time(utc)).collect()
    }

    /// All fire times t with from < t <= to, in order, at most `cap` of them
    /// (for missed-run detection). No instant appears twice.
    pub fn fires_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, cap: usize) -> Vec<DateTime<Utc>> {
        if from >= to || cap == 0 {
            return Vec::new();
        }
        self.fires(from).take_while(|t| *t <= to).take(cap).collect()
    }

    /// FireTime for a given UTC instant in this schedule's zone.
    pub fn fire_time(&self, utc: DateTime<Utc>) -> FireTime {
        FireTime {
            utc,
            local: utc.with_timezone(&self.tz).to_rfc3339_opts(SecondsFormat::AutoSi, false),
            timezone: self.tz.name().to_string(),
        }
    }

    /// The croner schedules whose fire times, merged, are this schedule's.
    fn engines(&self) -> &[Cron] {
        if self.fixed_times.is_empty() {
            std::slice::from_ref(&self.cron)
        } else {
            &self.fixed_times
        }
    }

    /// Fire times strictly after `after`, strictly increasing.
    ///
    /// Keeps the next fire time of each engine and repeatedly yields the
    /// smallest, advancing every engine that produced it (so an instant two
    /// engines share is yielded once).
    fn fires(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let engines = self.engines();
        let tz = self.tz;
        let mut heads: Vec<Option<DateTime<Utc>>> = engines.iter().map(|cron| next_of(cron, tz, after)).collect();
        std::iter::from_fn(move || {
            let earliest = heads.iter().flatten().min().copied()?;
            for (head, cron) in heads.iter_mut().zip(engines) {
                if *head == Some(earliest) {
                    *head = next_of(cron, tz, earliest);
                }
            }
            Some(earliest)
        })
    }
}

/// The IANA zone name `name` was probably meant to be (`europe/berlin` →
/// `Europe/Berlin`), when one is close.
pub fn suggest_zone(name: &str) -> Option<&'static str> {
    crate::text::suggest(name, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
}

/// The macro an unknown `@…` expression was probably meant to be.
pub fn suggest_macro(expr: &str) -> Option<&'static str> {
    if !expr.starts_with('@') || MACROS.iter().any(|(m, _)| m.eq_ignore_ascii_case(expr)) {
        return None;
    }
    crate::text::suggest(&expr.to_ascii_lowercase(), MACROS.iter().map(|(m, _)| *m))
}

/// How daylight saving time shaped one fire time (see [`CronSchedule`]'s
/// rules), for previews such as `lily jobs next`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DstMark {
    /// Fixed times that do not exist on `date` (the clock jumped over them)
    /// run once at this fire time, the first instant after the gap.
    Moved { date: String, nominal: Vec<String> },
    /// Wall times inside a gap on `date` that do not exist and so never fire
    /// (interval schedules, or a fixed time in a gap croner cannot bridge);
    /// this is the first fire after the gap.
    Skipped { date: String, nominal: Vec<String>, count: usize },
    /// The first of two passes of a repeated wall time (the clock is turned
    /// back later): `repeats` is whether the schedule fires again on the
    /// second pass (interval schedules) or runs once (fixed times).
    FirstPass { wall: String, repeats: bool, again_at: Option<String> },
    /// The second pass of a repeated wall time (interval schedules only).
    SecondPass { wall: String },
}

/// Most gap wall times listed in a [`DstMark`] (the count is exact).
const MAX_MARK_TIMES: usize = 8;

impl DstMark {
    /// One line for people, e.g. `02:30 does not exist on 2027-03-14; runs at 03:00 EDT`.
    pub fn note(&self, fire: &DateTime<Tz>) -> String {
        let at = fire.format("%H:%M %Z").to_string();
        let times = |nominal: &[String], count: usize| -> String {
            match (nominal, count) {
                ([one], 1) => one.clone(),
                (list, n) if n <= list.len() => list.join(", "),
                (list, n) => format!("{}–{} ({n} times)", list[0], list[list.len() - 1]),
            }
        };
        match self {
            DstMark::Moved { date, nominal } => {
                let verb = if nominal.len() == 1 { "does" } else { "do" };
                let once = if nominal.len() == 1 { "" } else { "once " };
                format!("{} {verb} not exist on {date}; runs {once}at {at}", times(nominal, nominal.len()))
            }
            DstMark::Skipped { date, nominal, count } => {
                let verb = if *count == 1 { "does" } else { "do" };
                format!("{} {verb} not exist on {date}; skipped", times(nominal, *count))
            }
            DstMark::FirstPass { wall, repeats: false, .. } => format!("first of two {wall}s; runs once"),
            DstMark::FirstPass { wall, again_at, .. } => {
                format!("first of two {wall}s; runs again at {}", again_at.as_deref().unwrap_or("the second"))
            }
            DstMark::SecondPass { wall } => format!("second {wall} (the clock was turned back); it ran at the first too"),
        }
    }
}

/// A fire time of a preview, with how DST shaped it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreviewFire {
    #[serde(flatten)]
    pub fire: FireTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<DstMark>,
    /// [`DstMark::note`] of `dst`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CronSchedule {
    /// Fire times `t` with `from <= t < until` (`until`: none = unbounded),
    /// at most `cap`, each with its DST mark; and whether `cap` cut the list.
    pub fn preview(&self, from: DateTime<Utc>, until: Option<DateTime<Utc>>, cap: usize) -> (Vec<PreviewFire>, bool) {
        let after = from - TimeDelta::nanoseconds(1);
        let mut out = Vec::new();
        let mut prev = after;
        for t in self.fires(after) {
            if until.is_some_and(|u| t >= u) {
                return (out, false);
            }
            if out.len() == cap {
                return (out, true);
            }
            let dst = self.dst_mark(prev, t);
            let note = dst.as_ref().map(|m| m.note(&t.with_timezone(&self.tz)));
            out.push(PreviewFire {
                fire: self.fire_time(t),
                dst,
                note,
            });
            prev = t;
        }
        (out, false)
    }

    /// Is this a fixed-time schedule (see the DST rules)?
    fn is_fixed_time(&self) -> bool {
        !self.fixed_times.is_empty() || self.cron.determine_job_type() == croner::JobType::FixedTime
    }

    fn wall(&self, t: chrono::NaiveDateTime) -> String {
        let seconds = self.expr.split_whitespace().count() == 6;
        t.format(if seconds { "%H:%M:%S" } else { "%H:%M" }).to_string()
    }

    /// How DST shaped fire time `t`, the previous one (or the search start)
    /// being `prev`. A gap is found when it ends at `t` or when the UTC offset
    /// changed between `prev` and `t` (the last change before `t` is looked
    /// at).
    pub fn dst_mark(&self, prev: DateTime<Utc>, t: DateTime<Utc>) -> Option<DstMark> {
        use chrono::{LocalResult, Offset, TimeZone};
        let off = |x: DateTime<Utc>| self.tz.offset_from_utc_datetime(&x.naive_utc()).fix().local_minus_utc();
        let local = t.with_timezone(&self.tz).naive_local();
        // A gap: a forward jump ending at t, or the last change in (prev, t].
        let just_before = t - TimeDelta::seconds(1);
        let change = if off(just_before) != off(t) {
            Some(t)
        } else if prev < t && off(prev) != off(t) {
            // Binary search the first instant with t's offset.
            let (mut lo, mut hi) = (prev, t);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if off(mid) == off(t) { hi = mid } else { lo = mid }
            }
            Some(hi)
        } else {
            None
        };
        if let Some(at) = change {
            let (old, new) = (off(at - TimeDelta::seconds(1)), off(at));
            if new > old {
                let start = at.naive_utc() + TimeDelta::seconds(i64::from(old));
                let end = at.naive_utc() + TimeDelta::seconds(i64::from(new));
                let step = if self.expr.split_whitespace().count() == 6 { 1 } else { 60 };
                let (mut nominal, mut count) = (Vec::new(), 0usize);
                let mut w = start;
                while w < end {
                    if self.cron.is_time_matching(&w).unwrap_or(false) {
                        count += 1;
                        if nominal.len() < MAX_MARK_TIMES - 1 {
                            nominal.push(self.wall(w));
                        } else {
                            // Keep the first ones and the last.
                            nominal.truncate(MAX_MARK_TIMES - 1);
                            nominal.push(self.wall(w));
                        }
                    }
                    w += TimeDelta::seconds(step);
                }
                if count > 0 {
                    let date = start.date().to_string();
                    if self.is_fixed_time() && at == t {
                        return Some(DstMark::Moved { date, nominal });
                    }
                    return Some(DstMark::Skipped { date, nominal, count });
                }
            }
        }
        // A repeated wall time.
        if let LocalResult::Ambiguous(first, second) = self.tz.from_local_datetime(&local) {
            let wall = self.wall(local);
            if first.with_timezone(&Utc) == t {
                let repeats = !self.is_fixed_time();
                let again_at = repeats.then(|| second.format("%H:%M %Z").to_string());
                return Some(DstMark::FirstPass { wall, repeats, again_at });
            }
            if second.with_timezone(&Utc) == t {
                return Some(DstMark::SecondPass { wall });
            }
        }
        None
    }
}

/// The parser configuration this module uses: optional leading seconds, no
/// year field, POSIX weekdays, Vixie OR of day-of-month and day-of-week.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .sloppy_ranges(false)
        .build()
}

/// The first fire time of `cron` in `tz` strictly after `after`.
///
/// Guards croner's answer: a result that is not strictly after `after` is
/// searched past. When croner gives up on a search that should succeed (a
/// gap longer than its two-hour gap search), the search resumes an hour later,
/// a bounded number of times.
fn next_of(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut origin = after;
    for _ in 0..MAX_SEARCH_RETRIES {
        match cron.find_next_occurrence(&origin.with_timezone(&tz), false) {
            Ok(found) => {
                let found = found.with_timezone(&Utc);
                if found > after {
                    return Some(found);
                }
                origin = found.max(origin).checked_add_signed(TimeDelta::seconds(1))?;
            }
            Err(CronError::TimeSearchLimitExceeded) => {
                origin = origin.checked_add_signed(TimeDelta::hours(1))?;
            }
            Err(_) => return None,
        }
    }
    None
}

/// The first number in `field` outside the field's range, if any. Steps,
/// names and croner's `L`/`W`/`#` suffixes are left to croner.
fn out_of_range_value(field: &str, spec: &FieldSpec) -> Option<String> {
    for part in field.split(',') {
        let part = part.trim_start_matches('+');
        let part = part.split('#').next().unwrap_or(part);
        let range = part.split('/').next().unwrap_or(part);
        for bound in range.split('-') {
            let number = bound.trim_end_matches(['W', 'w', 'L', 'l']);
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            match number.parse::<u64>() {
                Ok(value) if (spec.min..=spec.max).contains(&value) => {}
                _ => return Some(number.to_string()),
            }
        }
    }
    None
}

/// Turns a croner error for the whole expression into a reason naming the
/// field at fault, found by parsing each field alone (the others `*`).
fn locate_error(parser: &CronParser, fields: &[&str], specs: &[&FieldSpec], err: &CronError) -> String {
    for (index, (field, spec)) in fields.iter().zip(specs).enumerate() {
        let probe: Vec<&str> = (0..fields.len()).map(|other| if other == index { *field } else { "*" }).collect();
        if let Err(field_err) = parser.parse(&probe.join(" ")) {
            return format!("{} field '{field}': {}", spec.name, clean_reason(&field_err));
        }
    }
    clean_reason(err)
}

/// croner's message for `err`, as a lower-case clause on one line.
fn clean_reason(err: &CronError) -> String {
    let message = match err {
        CronError::EmptyPattern => "expression is empty".to_string(),
        CronError::InvalidPattern(msg) | CronError::ComponentError(msg) => msg.clone(),
        CronError::IllegalCharacters(msg) => {
            // "CronPattern contains illegal character 'X' in part 'Y'": the
            // caller names the field already.
            let msg = msg.replace("CronPattern contains ", "");
            msg.split(" in part ").next().unwrap_or(&msg).to_string()
        }
        other => other.to_string(),
    };
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message.trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "invalid expression".to_string(),
    }
}

/// For an expression whose second, minute and hour fields hold plain numbers
/// only and name between 2 and [`MAX_FIXED_TIMES`] times of day: one croner
/// schedule per time of day, each a single fixed time to croner. Empty
/// otherwise (croner's own handling already fits).
fn split_fixed_times(parser: &CronParser, cron: &Cron, fields: &[&str]) -> Result<Vec<Cron>, CronError> {
    let (time_fields, date_fields) = if fields.len() == 6 {
        (&fields[..3], &fields[3..])
    } else {
        (&fields[..2], &fields[2..])
    };
    let plain = |field: &str| field.split(',').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !time_fields.iter().all(|field| plain(field)) {
        return Ok(Vec::new());
    }

    let pattern = &cron.pattern;
    let seconds = pattern.seconds.values();
    let minutes = pattern.minutes.values();
    let hours = pattern.hours.values();
    let count = seconds.len() * minutes.len() * hours.len();
    if !(2..=MAX_FIXED_TIMES).contains(&count) {
        return Ok(Vec::new());
    }

    let date = date_fields.join(" ");
    let mut crons = Vec::with_capacity(count);
    for hour in &hours {
        for minute in &minutes {
            for second in &seconds {
                crons.push(parser.parse(&format!("{second} {minute} {hour} {date}"))?);
            }
        }
    }
    Ok(crons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("valid RFC 3339 instant in test")
    }

    fn sched(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, tz).expect("valid schedule in test")
    }

    fn parse_err(expr: &str, tz: &str) -> String {
        let err = CronSchedule::parse(expr, tz).expect_err("schedule should be rejected").to_string();
        assert!(!err.contains('\n'), "error must be one line: {err:?}");
        err
    }

    fn utcs(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|s| utc(s)).collect()
    }

    fn assert_strictly_increasing_after(times: &[DateTime<Utc>], from: DateTime<Utc>) {
        let mut previous = from;
        for t in times {
            assert!(*t > previous, "{t} is not after {previous} in {times:?}");
            previous = *t;
        }
    }

    #[test]
    fn accessors_return_expression_and_zone() {
        let s = sched("  */15 * * * *  ", "Europe/Berlin");
        assert_eq!(s.expr(), "*/15 * * * *");
        assert_eq!(s.timezone(), chrono_tz::Europe::Berlin);
    }

    #[test]
    fn five_field_expression_fires_on_whole_minutes() {
        let s = sched("*/15 * * * *", "UTC");
        assert_eq!(
            s.fires_between(utc("2026-05-01T10:07:30Z"), utc("2026-05-01T11:00:00Z"), 10),
            utcs(&["2026-05-01T10:15:00Z", "2026-05-01T10:30:00Z", "2026-05-01T10:45:00Z", "2026-05-01T11:00:00Z",])
        );
    }

    #[test]
    fn six_field_expression_has_leading_seconds() {
        let every_ten = sched("*/10 * * * * *", "UTC");
        assert_eq!(
            every_ten
                .upcoming(utc("2026-05-01T12:00:03Z"), 7)
                .into_iter()
                .map(|f| f.utc)
                .collect::<Vec<_>>(),
            utcs(&[
                "2026-05-01T12:00:10Z",
                "2026-05-01T12:00:20Z",
                "2026-05-01T12:00:30Z",
                "2026-05-01T12:00:40Z",
                "2026-05-01T12:00:50Z",
                "2026-05-01T12:01:00Z",
                "2026-05-01T12:01:10Z",
            ])
        );

        let every_five_minutes = sched("0 */5 * * * *", "UTC");
        assert_eq!(every_five_minutes.next_after(utc("2026-05-01T12:03:00Z")), Some(utc("2026-05-01T12:05:00Z")));

        let at_seconds = sched("15 30 2 * * *", "UTC");
        assert_eq!(at_seconds.next_after(utc("2026-05-01T00:00:00Z")), Some(utc("2026-05-01T02:30:15Z")));
        // The same digits as 5 fields mean minute 15, hour 30: invalid.
        assert!(CronSchedule::parse("15 30 2 * *", "UTC").is_err());
    }

    #[test]
    fn every_macro_matches_its_expansion() {
        let after = utc("2026-05-13T10:20:00Z"); // a Wednesday
        let cases = [
            ("@hourly", "0 * * * *", "2026-05-13T11:00:00Z"),
            ("@daily", "0 0 * * *", "2026-05-14T00:00:00Z"),
            ("@midnight", "0 0 * * *", "2026-05-14T00:00:00Z"),
            ("@weekly", "0 0 * * 0", "2026-05-17T00:00:00Z"),
            ("@monthly", "0 0 1 * *", "2026-06-01T00:00:00Z"),
            ("@yearly", "0 0 1 1 *", "2027-01-01T00:00:00Z"),
            ("@annually", "0 0 1 1 *", "2027-01-01T00:00:00Z"),
        ];
        for (name, expansion, first) in cases {
            let by_macro = sched(name, "UTC");
            assert_eq!(by_macro.expr(), name);
            assert_eq!(by_macro.next_after(after), Some(utc(first)), "{name}");
            let expanded = sched(expansion, "UTC");
            assert_eq!(
                by_macro.fires_between(after, utc("2030-01-01T00:00:00Z"), 50),
                expanded.fires_between(after, utc("2030-01-01T00:00:00Z"), 50),
                "{name}"
            );
            let upper = sched(&name.to_uppercase(), "UTC");
            assert_eq!(upper.next_after(after), Some(utc(first)), "{name}");
        }
        // A macro follows the zone's wall clock.
        assert_eq!(sched("@daily", "America/New_York").next_after(after), Some(utc("2026-05-14T04:00:00Z")));
    }

    #[test]
    fn unknown_macro_is_rejected() {
        let err = parse_err("@reboot", "UTC");
        assert!(err.contains("unknown macro"), "{err}");
        let err = parse_err("@daily 5", "UTC");
        assert!(err.contains("unknown macro"), "{err}");
    }

    #[test]
    fn bad_fields_are_rejected_with_the_field_named() {
        assert_eq!(
            parse_err("61 * * * *", "UTC"),
            "invalid cron expression '61 * * * *': minute value 61 out of range (0-59)"
        );
        let cases = [
            ("* 24 * * *", "hour value 24 out of range (0-23)"),
            ("* * 0 * *", "day-of-month value 0 out of range (1-31)"),
            ("* * 32 * *", "day-of-month value 32 out of range (1-31)"),
            ("* * * 13 *", "month value 13 out of range (1-12)"),
            ("* * * * 8", "day-of-week value 8 out of range (0-7)"),
            ("60 * * * * *", "second value 60 out of range (0-59)"),
            ("0-70 * * * *", "minute value 70 out of range (0-59)"),
            ("abc * * * *", "minute field 'abc': illegal character 'A'"),
            ("*/0 * * * *", "minute field '*/0': step cannot be zero"),
            ("* * * * 5#9", "day-of-week field '5#9'"),
            ("0/10 * * * *", "minute field '0/10'"),
            ("5-1 * * * *", "minute field '5-1'"),
            ("* * * FOO *", "month field 'FOO'"),
            ("? * * * *", "minute field '?'"),
        ];
        for (expr, reason) in cases {
            let err = parse_err(expr, "UTC");
            assert!(err.starts_with(&format!("invalid cron expression '{expr}': {reason}")), "{expr}: {err}");
        }
    }

    #[test]
    fn wrong_field_counts_and_empty_expressions_are_rejected() {
        let err = parse_err("* * * *", "UTC");
        assert!(err.contains("got 4"), "{err}");
        let err = parse_err("*", "UTC");
        assert!(err.contains("got 1"), "{err}");
        let err = parse_err("0 0 0 1 1 * 2030", "UTC");
        assert!(err.contains("7 fields"), "{err}");
        let err = parse_err("0 0 0 1 1 * 2030 x", "UTC");
        assert!(err.contains("got 8"), "{err}");
        assert_eq!(parse_err("", "UTC"), "invalid cron expression '': expression is empty");
        assert_eq!(parse_err("   ", "UTC"), "invalid cron expression '': expression is empty");
    }

    #[test]
    fn bad_time_zones_are_rejected() {
        assert_eq!(parse_err("* * * * *", "Mars/Base"), "unknown IANA time zone 'Mars/Base'");
        let err = parse_err("* * * * *", "");
        assert!(err.starts_with("time zone is empty"), "{err}");
        let err = parse_err("* * * * *", "  ");
        assert!(err.starts_with("time zone is empty"), "{err}");
        assert!(CronSchedule::parse("* * * * *", "UTC").is_ok());
        assert!(CronSchedule::parse("* * * * *", "Etc/UTC").is_ok());
    }

    #[test]
    fn expression_that_never_fires_is_rejected() {
        let err = parse_err("0 0 30 2 *", "UTC");
        assert!(err.contains("never fires"), "{err}");
        let err = parse_err("0 0 31 4 *", "Europe/Berlin");
        assert!(err.contains("never fires"), "{err}");
        // 29 February does exist.
        let leap = sched("0 0 29 2 *", "UTC");
        assert_eq!(leap.next_after(utc("2026-01-01T00:00:00Z")), Some(utc("2028-02-29T00:00:00Z")));
    }

    #[test]
    fn sunday_is_both_0_and_7() {
        let after = utc("2026-05-13T10:20:00Z"); // a Wednesday
        let expected = utcs(&["2026-05-17T09:00:00Z", "2026-05-24T09:00:00Z", "2026-05-31T09:00:00Z"]);
        for expr in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN", "0 9 * * sun"] {
            let fires: Vec<_> = sched(expr, "UTC").upcoming(after, 3).into_iter().map(|f| f.utc).collect();
            assert_eq!(fires, expected, "{expr}");
        }
        // A range ending in 7 covers Sunday too.
        let weekend = sched("0 9 * * 6-7", "UTC");
        assert_eq!(
            weekend.upcoming(after, 2).into_iter().map(|f| f.utc).collect::<Vec<_>>(),
            utcs(&["2026-05-16T09:00:00Z", "2026-05-17T09:00:00Z"])
        );
    }

    #[test]
    fn next_after_is_strictly_after_its_argument() {
        let s = sched("*/15 * * * *", "America/New_York");
        let fire = utc("2026-05-01T10:15:00Z");
        assert_eq!(s.next_after(fire - TimeDelta::seconds(1)), Some(fire), "one second before");
        assert_eq!(s.next_after(fire), Some(utc("2026-05-01T10:30:00Z")));
        assert_eq!(s.next_after(fire + TimeDelta::milliseconds(500)), Some(utc("2026-05-01T10:30:00Z")));
        assert_eq!(s.next_after(fire - TimeDelta::milliseconds(500)), Some(fire));

        let daily = sched("30 2 * * *", "America/New_York");
        let fire = utc("2026-05-01T06:30:00Z");
        assert_eq!(daily.next_after(fire), Some(utc("2026-05-02T06:30:00Z")));

        // Chaining next_after walks the same instants as fires_between.
        let from = utc("2026-10-31T00:00:00Z");
        let to = utc("2026-11-02T00:00:00Z");
        let mut chained = Vec::new();
        let mut at = from;
        while let Some(next) = s.next_after(at).filter(|t| *t <= to) {
            chained.push(next);
            at = next;
        }
        assert_eq!(chained, s.fires_between(from, to, 1000));
    }

    #[test]
    fn upcoming_local_times_carry_the_offset() {
        let s = sched("0 12 * * *", "America/New_York");
        let fires = s.upcoming(utc("2026-03-06T00:00:00Z"), 4);
        let local: Vec<&str> = fires.iter().map(|f| f.local.as_str()).collect();
        assert_eq!(
            local,
            [
                "2026-03-06T12:00:00-05:00",
                "2026-03-07T12:00:00-05:00",
                "2026-03-08T12:00:00-04:00",
                "2026-03-09T12:00:00-04:00",
            ]
        );
        let utc_times: Vec<DateTime<Utc>> = fires.iter().map(|f| f.utc).collect();
        assert_eq!(
            utc_times,
            utcs(&["2026-03-06T17:00:00Z", "2026-03-07T17:00:00Z", "2026-03-08T16:00:00Z", "2026-03-09T16:00:00Z",])
        );
        assert!(fires.iter().all(|f| f.timezone == "America/New_York"));
        assert!(s.upcoming(utc("2026-03-06T00:00:00Z"), 0).is_empty());

        let spring = sched("30 2 * * *", "America/New_York").fire_time(utc("2026-03-08T07:00:00Z"));
        assert_eq!(spring.local, "2026-03-08T03:00:00-04:00");
        let utc_zone = sched("0 0 * * *", "UTC").fire_time(utc("2026-03-08T00:00:00Z"));
        assert_eq!(utc_zone.local, "2026-03-08T00:00:00+00:00");
        assert_eq!(utc_zone.timezone, "UTC");
    }

    #[test]
    fn fire_time_serializes_to_json() {
        let fire = sched("30 2 * * *", "America/New_York").fire_time(utc("2026-03-08T07:00:00Z"));
        let json = serde_json::to_value(&fire).expect("FireTime serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "utc": "2026-03-08T07:00:00Z",
                "local": "2026-03-08T03:00:00-04:00",
                "timezone": "America/New_York",
            })
        );
    }

    #[test]
    fn dst_new_york_spring_fixed_time_in_gap_runs_once_after_gap() {
        let s = sched("30 2 * * *", "America/New_York");
        let fires = s.fires_between(utc("2026-03-07T12:00:00Z"), utc("2026-03-09T12:00:00Z"), 10);
        assert_eq!(fires, utcs(&["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]));
        assert_eq!(s.fire_time(fires[0]).local, "2026-03-08T03:00:00-04:00");
        // From just before the gap, and from inside the moved fire's hour.
        assert_eq!(s.next_after(utc("2026-03-08T06:59:59Z")), Some(utc("2026-03-08T07:00:00Z")));
        assert_eq!(s.next_after(utc("2026-03-08T07:00:00Z")), Some(utc("2026-03-09T06:30:00Z")));
        assert_eq!(s.next_after(utc("2026-03-08T07:10:00Z")), Some(utc("2026-03-09T06:30:00Z")));
        // The day before is an ordinary EST day.
        assert_eq!(s.next_after(utc("2026-03-07T00:00:00Z")), Some(utc("2026-03-07T07:30:00Z")));
    }

    #[test]
    fn dst_new_york_fall_fixed_time_in_repeat_runs_once_on_first_pass() {
        let s = sched("30 1 * * *", "America/New_York");
        let fires = s.fires_between(utc("2026-10-31T12:00:00Z"), utc("2026-11-02T12:00:00Z"), 10);
        assert_eq!(fires, utcs(&["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]));
        assert_eq!(s.fire_time(fires[0]).local, "2026-11-01T01:30:00-04:00");
        // Not at 06:30Z (01:30 EST), whatever the search starts from.
        for start in ["2026-11-01T05:30:00Z", "2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:29:59Z"] {
            assert_eq!(s.next_after(utc(start)), Some(utc("2026-11-02T06:30:00Z")), "from {start}");
        }
    }

    #[test]
    fn dst_new_york_fall_interval_runs_in_both_passes() {
        let s = sched("*/15 * * * *", "America/New_York");
        let from = utc("2026-11-01T04:00:00Z");
        let fires = s.fires_between(from, utc("2026-11-01T07:00:00Z"), 100);
        let expected: Vec<DateTime<Utc>> = (1..=12).map(|i| from + TimeDelta::minutes(15 * i)).collect();
        assert_eq!(fires.len(), 12);
        assert_eq!(fires, expected);
        assert_strictly_increasing_after(&fires, from);
        assert_eq!(s.fire_time(utc("2026-11-01T05:00:00Z")).local, "2026-11-01T01:00:00-04:00");
        assert_eq!(s.fire_time(utc("2026-11-01T06:00:00Z")).local, "2026-11-01T01:00:00-05:00");
        // The second pass is reached from the end of the first.
        assert_eq!(s.next_after(utc("2026-11-01T05:45:00Z")), Some(utc("2026-11-01T06:00:00Z")));

        // Hourly fires every real hour through the repeat.
        let hourly = sched("@hourly", "America/New_York");
        assert_eq!(
            hourly.fires_between(from, utc("2026-11-01T08:00:00Z"), 10),
            utcs(&["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z",])
        );
    }

    #[test]
    fn dst_new_york_spring_interval_skips_missing_wall_times() {
        let s = sched("*/15 * * * *", "America/New_York");
        let from = utc("2026-03-08T06:00:00Z"); // 01:00 EST
        let fires = s.fires_between(from, utc("2026-03-08T08:00:00Z"), 100);
        let expected: Vec<DateTime<Utc>> = (1..=8).map(|i| from + TimeDelta::minutes(15 * i)).collect();
        assert_eq!(fires, expected);
        let locals: Vec<String> = fires.iter().map(|t| s.fire_time(*t).local).collect();
        assert!(locals.iter().all(|l| !l.starts_with("2026-03-08T02:")), "{locals:?}");
        assert_eq!(locals[3], "2026-03-08T03:00:00-04:00");
    }

    #[test]
    fn dst_berlin_spring_fixed_time_in_gap_runs_once_after_gap() {
        let s = sched("30 2 * * *", "Europe/Berlin");
        let fires = s.fires_between(utc("2026-03-28T00:00:00Z"), utc("2026-03-31T00:00:00Z"), 10);
        assert_eq!(fires, utcs(&["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z",]));
        assert_eq!(s.fire_time(fires[1]).local, "2026-03-29T03:00:00+02:00");
    }

    #[test]
    fn dst_berlin_autumn_fixed_time_in_repeat_runs_once_on_first_pass() {
        let s = sched("30 2 * * *", "Europe/Berlin");
        let fires = s.fires_between(utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"), 10);
        assert_eq!(fires, utcs(&["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]));
        assert_eq!(s.fire_time(fires[0]).local, "2026-10-25T02:30:00+02:00");
        assert_eq!(s.next_after(utc("2026-10-25T01:00:00Z")), Some(utc("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn dst_berlin_autumn_interval_runs_in_both_passes() {
        let s = sched("*/15 * * * *", "Europe/Berlin");
        let from = utc("2026-10-25T00:00:00Z"); // 02:00 CEST
        let fires = s.fires_between(from, utc("2026-10-25T02:00:00Z"), 100);
        let expected: Vec<DateTime<Utc>> = (1..=8).map(|i| from + TimeDelta::minutes(15 * i)).collect();
        assert_eq!(fires, expected);
        assert_eq!(s.fire_time(utc("2026-10-25T00:30:00Z")).local, "2026-10-25T02:30:00+02:00");
        assert_eq!(s.fire_time(utc("2026-10-25T01:30:00Z")).local, "2026-10-25T02:30:00+01:00");
    }

    #[test]
    fn dst_half_hour_shift_lord_howe() {
        // Lord Howe Island moves its clock by 30 minutes: 02:00 -> 02:30 on
        // 2026-10-04, and 02:00 -> 01:30 on 2026-04-05.
        let s = sched("15 2 * * *", "Australia/Lord_Howe");
        let spring = s.fires_between(utc("2026-10-02T12:00:00Z"), utc("2026-10-04T12:00:00Z"), 10);
        let locals: Vec<String> = spring.iter().map(|t| s.fire_time(*t).local).collect();
        assert_eq!(locals, ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00"]);
        let repeat = sched("45 1 * * *", "Australia/Lord_Howe");
        let autumn = repeat.fires_between(utc("2026-04-03T12:00:00Z"), utc("2026-04-05T12:00:00Z"), 10);
        let locals: Vec<String> = autumn.iter().map(|t| repeat.fire_time(*t).local).collect();
        assert_eq!(locals, ["2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00"]);
    }

    #[test]
    fn dst_fixed_time_lists_get_fixed_time_handling() {
        // croner alone treats lists as interval schedules; see CronSchedule.
        let ny = "America/New_York";
        let as_croner_sees_it = sched("30 2,14 * * *", ny);
        assert_eq!(as_croner_sees_it.cron.determine_job_type(), croner::JobType::IntervalWildcard);
        assert_eq!(as_croner_sees_it.engines().len(), 2);
        let spring = sched("30 2,14 * * *", ny);
        assert_eq!(
            spring.fires_between(utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"), 10),
            utcs(&["2026-03-08T07:00:00Z", "2026-03-08T18:30:00Z"])
        );
        let fall = sched("30 1,13 * * *", ny);
        assert_eq!(
            fall.fires_between(utc("2026-11-01T00:00:00Z"), utc("2026-11-02T00:00:00Z"), 10),
            utcs(&["2026-11-01T05:30:00Z", "2026-11-01T18:30:00Z"])
        );
        // Two times inside the same gap collapse into one fire.
        let both_in_gap = sched("0,30 2 * * *", ny);
        assert_eq!(
            both_in_gap.fires_between(utc("2026-03-08T00:00:00Z"), utc("2026-03-09T12:00:00Z"), 10),
            utcs(&["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z",])
        );
        // A time at the end of the gap and one inside it: one fire.
        let edge = sched("0 2,3 * * *", ny);
        assert_eq!(
            edge.fires_between(utc("2026-03-08T00:00:00Z"), utc("2026-03-08T12:00:00Z"), 10),
            utcs(&["2026-03-08T07:00:00Z"])
        );
        // Seconds lists are split too.
        let seconds = sched("0,30 30 1 * * *", ny);
        assert_eq!(
            seconds.fires_between(utc("2026-11-01T00:00:00Z"), utc("2026-11-02T00:00:00Z"), 10),
            utcs(&["2026-11-01T05:30:00Z", "2026-11-01T05:30:30Z"])
        );
    }

    #[test]
    fn historic_day_long_gap_does_not_stop_the_schedule() {
        // Pacific/Apia skipped 2011-12-30 entirely (UTC-10 to UTC+14).
        let daily = sched("30 2 * * *", "Pacific/Apia");
        let fires = daily.fires_between(utc("2011-12-27T00:00:00Z"), utc("2012-01-02T00:00:00Z"), 10);
        let locals: Vec<String> = fires.iter().map(|t| daily.fire_time(*t).local).collect();
        assert_eq!(
            locals,
            [
                "2011-12-27T02:30:00-10:00",
                "2011-12-28T02:30:00-10:00",
                "2011-12-29T02:30:00-10:00",
                "2011-12-31T02:30:00+14:00",
                "2012-01-01T02:30:00+14:00",
                "2012-01-02T02:30:00+14:00",
            ]
        );
        let hourly = sched("@hourly", "Pacific/Apia");
        let from = utc("2011-12-30T00:00:00Z");
        let fires = hourly.fires_between(from, from + TimeDelta::hours(24), 100);
        let expected: Vec<DateTime<Utc>> = (1..=24).map(|h| from + TimeDelta::hours(h)).collect();
        assert_eq!(fires, expected);
    }

    #[test]
    fn interval_schedules_match_a_brute_force_walk() {
        // For interval schedules the fire times are exactly the instants whose
        // wall clock matches: check every minute around each transition.
        let windows = [
            ("America/New_York", "2026-03-08T03:00:00Z"),
            ("America/New_York", "2026-11-01T03:00:00Z"),
            ("Europe/Berlin", "2026-03-28T22:00:00Z"),
            ("Europe/Berlin", "2026-10-24T22:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T12:00:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T12:00:00Z"),
        ];
        let exprs = ["*/15 * * * *", "0 * * * *", "*/7 1-3 * * *", "20-40/10 2 * * *"];
        for (zone, start) in windows {
            for expr in exprs {
                let s = sched(expr, zone);
                let from = utc(start);
                let to = from + TimeDelta::hours(8);
                let expected: Vec<DateTime<Utc>> = (1..=8 * 60)
                    .map(|m| from + TimeDelta::minutes(m))
                    .filter(|t| s.cron.is_time_matching(&t.with_timezone(&s.tz)).expect("matching works"))
                    .collect();
                assert_eq!(s.fires_between(from, to, 1000), expected, "{expr} in {zone}");
            }
        }
    }

    #[test]
    fn fires_between_never_repeats_and_stays_after_from() {
        let cases = [
            ("*/15 * * * *", "America/New_York"),
            ("30 1 * * *", "America/New_York"),
            ("30 2 * * *", "America/New_York"),
            ("0,30 1,2 * * *", "America/New_York"),
            ("*/10 * * * * *", "Europe/Berlin"),
            ("30 2 * * *", "Europe/Berlin"),
            ("@hourly", "Europe/Berlin"),
        ];
        let windows = [
            ("2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
            ("2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            ("2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            ("2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z"),
        ];
        for (expr, zone) in cases {
            let s = sched(expr, zone);
            for (from, to) in windows {
                let (from, to) = (utc(from), utc(to));
                let fires = s.fires_between(from, to, 100_000);
                assert!(!fires.is_empty(), "{expr} in {zone}");
                assert_strictly_increasing_after(&fires, from);
                assert!(fires.iter().all(|t| *t <= to), "{expr} in {zone}");

                // Starting exactly on a fire time excludes it.
                let restarted = s.fires_between(fires[0], to, 100_000);
                assert_eq!(restarted, fires[1..], "{expr} in {zone}");

                // The cap keeps the earliest ones.
                assert_eq!(s.fires_between(from, to, 3), fires[..3.min(fires.len())]);
            }
        }
        let s = sched("*/15 * * * *", "UTC");
        let t = utc("2026-05-01T10:00:00Z");
        assert!(s.fires_between(t, t, 10).is_empty());
        assert!(s.fires_between(t, t - TimeDelta::hours(1), 10).is_empty());
        assert!(s.fires_between(t, t + TimeDelta::hours(1), 0).is_empty());
        assert_eq!(s.fires_between(t, t + TimeDelta::minutes(15), 10), utcs(&["2026-05-01T10:15:00Z"]));
    }

    /// `jobs next`'s lines: local time and DST note.
    fn preview_lines(expr: &str, zone: &str, from: &str, until: &str) -> Vec<String> {
        let s = sched(expr, zone);
        let (fires, cut) = s.preview(utc(from), Some(utc(until)), 10_000);
        assert!(!cut);
        fires
            .iter()
            .map(|f| format!("{} {}", f.fire.local, f.note.as_deref().unwrap_or("")).trim_end().to_string())
            .collect()
    }

    #[test]
    fn preview_marks_what_dst_did_new_york_2027() {
        // Spring forward 2027-03-14 02:00 EST → 03:00 EDT.
        assert_eq!(
            preview_lines("30 2 * * *", "America/New_York", "2027-03-13T05:00:00Z", "2027-03-15T04:00:00Z"),
            [
                "2027-03-13T02:30:00-05:00",
                "2027-03-14T03:00:00-04:00 02:30 does not exist on 2027-03-14; runs at 03:00 EDT",
            ]
        );
        assert_eq!(
            preview_lines("0,30 2 * * *", "America/New_York", "2027-03-14T05:00:00Z", "2027-03-15T04:00:00Z"),
            ["2027-03-14T03:00:00-04:00 02:00, 02:30 do not exist on 2027-03-14; runs once at 03:00 EDT"]
        );
        assert_eq!(
            preview_lines("*/30 1-3 * * *", "America/New_York", "2027-03-14T05:00:00Z", "2027-03-15T04:00:00Z"),
            [
                "2027-03-14T01:00:00-05:00",
                "2027-03-14T01:30:00-05:00",
                "2027-03-14T03:00:00-04:00 02:00, 02:30 do not exist on 2027-03-14; skipped",
                "2027-03-14T03:30:00-04:00",
            ]
        );
        // Fall back 2027-11-07 02:00 EDT → 01:00 EST.
        assert_eq!(
            preview_lines("30 1 * * *", "America/New_York", "2027-11-06T04:00:00Z", "2027-11-08T05:00:00Z"),
            ["2027-11-06T01:30:00-04:00", "2027-11-07T01:30:00-04:00 first of two 01:30s; runs once",]
        );
        assert_eq!(
            preview_lines("30 * * * *", "America/New_York", "2027-11-07T05:00:00Z", "2027-11-07T08:00:00Z"),
            [
                "2027-11-07T01:30:00-04:00 first of two 01:30s; runs again at 01:30 EST",
                "2027-11-07T01:30:00-05:00 second 01:30 (the clock was turned back); it ran at the first too",
                "2027-11-07T02:30:00-05:00",
            ]
        );
    }

    #[test]
    fn preview_marks_what_dst_did_berlin_2027() {
        // 2027-03-28 02:00 CET → 03:00 CEST; 2027-10-31 03:00 CEST → 02:00 CET.
        assert_eq!(
            preview_lines("30 2 * * *", "Europe/Berlin", "2027-03-27T00:00:00Z", "2027-03-29T00:00:00Z"),
            [
                "2027-03-27T02:30:00+01:00",
                "2027-03-28T03:00:00+02:00 02:30 does not exist on 2027-03-28; runs at 03:00 CEST",
            ]
        );
        assert_eq!(
            preview_lines("30 2 * * *", "Europe/Berlin", "2027-10-30T00:00:00Z", "2027-11-01T00:00:00Z"),
            ["2027-10-30T02:30:00+02:00", "2027-10-31T02:30:00+02:00 first of two 02:30s; runs once",]
        );
        // Seconds schedules name seconds; long lists are shortened, the count stays exact.
        let s = sched("*/10 * 2-3 * * *", "Europe/Berlin");
        let (fires, _) = s.preview(utc("2027-03-28T00:59:00Z"), Some(utc("2027-03-28T01:00:01Z")), 100);
        let last = fires.last().expect("fires");
        assert_eq!(last.note.as_deref(), Some("02:00:00–02:59:50 (360 times) do not exist on 2027-03-28; skipped"));
        assert_eq!(last.fire.local, "2027-03-28T03:00:00+02:00");
        assert!(matches!(&last.dst, Some(DstMark::Skipped { count: 360, nominal, .. }) if nominal.len() == MAX_MARK_TIMES));
    }

    #[test]
    fn preview_window_is_from_inclusive_until_exclusive_and_capped() {
        let s = sched("0 * * * *", "UTC");
        let (fires, cut) = s.preview(utc("2027-01-01T00:00:00Z"), Some(utc("2027-01-01T03:00:00Z")), 100);
        let utcs_got: Vec<DateTime<Utc>> = fires.iter().map(|f| f.fire.utc).collect();
        assert_eq!(utcs_got, utcs(&["2027-01-01T00:00:00Z", "2027-01-01T01:00:00Z", "2027-01-01T02:00:00Z"]));
        assert!(!cut);
        let (fires, cut) = s.preview(utc("2027-01-01T00:00:00Z"), None, 2);
        assert_eq!(fires.len(), 2);
        assert!(cut);
        let json = serde_json::to_value(&fires[0]).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"utc": "2027-01-01T00:00:00Z", "local": "2027-01-01T00:00:00+00:00", "timezone": "UTC"})
        );
        let moved = sched("30 2 * * *", "America/New_York").preview(utc("2027-03-14T05:00:00Z"), None, 1).0;
        let json = serde_json::to_value(&moved[0]).expect("json");
        assert_eq!(json["dst"], serde_json::json!({"kind": "moved", "date": "2027-03-14", "nominal": ["02:30"]}));
        assert_eq!(json["note"], "02:30 does not exist on 2027-03-14; runs at 03:00 EDT");
    }

    #[test]
    fn zone_and_macro_suggestions() {
        assert_eq!(suggest_zone("europe/berlin"), Some("Europe/Berlin"));
        assert_eq!(suggest_zone("America/New_Yrok"), Some("America/New_York"));
        assert_eq!(suggest_zone("Mars/Olympus"), None);
        assert_eq!(suggest_macro("@dialy"), Some("@daily"));
        assert_eq!(suggest_macro("@daily"), None);
        assert_eq!(suggest_macro("0 9 * * *"), None);
    }
}
