//! Spec watching: a cheap stamp scan of the jobs directory, parsing only
//! the files that changed, and rebuilding the loaded cron jobs from them.

use super::*;

/// What one spec file holds, as last read.
pub(super) enum Parsed {
    Cron(Arc<CronSpec>),
    Manual(String),
    Invalid,
}

/// What the scheduler keeps of a cron job between its fires: what the next
/// decision needs (id, expression and zone, catch-up rules, the run cap)
/// and what a record of a time that did not run names (target, spec path
/// and digest) — a few hundred bytes. Not kept: the parsed spec (a run reads
/// its spec file when it fires, [`Fire::spec_now`]) and the compiled
/// schedule (croner's form is ~5 KiB per expression; compiled when needed,
/// a bounded number kept in [`ScheduleCache`]).
pub(super) struct CronSpec {
    pub(super) id: String,
    /// The expression as given, trimmed (what [`JobPlan::fingerprint`] shows).
    pub(super) cron: Box<str>,
    pub(super) tz: chrono_tz::Tz,
    pub(super) catchup: crate::spec::Catchup,
    pub(super) starting_deadline: TimeDelta,
    pub(super) max_parallel_runs: u32,
    /// Shared by the jobs with one target ([`Scheduler::intern_target`]).
    pub(super) target: Arc<crate::runs::TargetRecord>,
    /// Shared with the [`CachedSpec`] of its file.
    pub(super) path: Arc<Path>,
    /// The sha256 of the file as read.
    pub(super) sha256: Option<[u8; 32]>,
    /// What planning the job depends on ([`crate::jobs::plan_key`]).
    pub(super) plan_key: [u8; 32],
}

impl CronSpec {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// `sha256:<hex>`, as [`SpecFile::sha256`] (empty when unknown).
    pub(super) fn spec_sha256(&self) -> String {
        self.sha256.map(|d| format!("sha256:{}", hex::encode(d))).unwrap_or_default()
    }

    /// `"<expr> @ <timezone>"`, as [`JobPlan::fingerprint`].
    pub(super) fn fingerprint(&self) -> String {
        format!("{} @ {}", self.cron, self.tz.name())
    }
}

/// Compiled schedules by (expression, zone), at most [`ScheduleCache::MAX`]
/// of them: the jobs that fire keep theirs compiled, and memory does not
/// grow with the number of jobs. Compiling is a pure function of the two
/// strings, so a schedule compiled again is the same schedule.
#[derive(Default)]
pub(super) struct ScheduleCache {
    map: HashMap<(Box<str>, chrono_tz::Tz), Arc<crate::spec::cron::CronSchedule>>,
}

impl ScheduleCache {
    pub(super) const MAX: usize = 64;

    pub(super) fn get(&mut self, cron: &str, tz: chrono_tz::Tz) -> Option<Arc<crate::spec::cron::CronSchedule>> {
        if let Some(s) = self.map.get(&(Box::from(cron), tz)) {
            return Some(s.clone());
        }
        match crate::spec::cron::CronSchedule::parse(cron, tz.name()) {
            Ok(s) => {
                let s = Arc::new(s);
                self.put(s.clone());
                Some(s)
            }
            Err(e) => {
                // Validated when the spec was read; cannot happen.
                error!(cron, timezone = tz.name(), error = %e, "a loaded schedule no longer compiles");
                None
            }
        }
    }

    #[cfg(test)]
    pub(super) fn map_len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn put(&mut self, s: Arc<crate::spec::cron::CronSchedule>) {
        if self.map.len() >= Self::MAX {
            self.map.clear();
        }
        self.map.insert((Box::from(s.expr()), s.timezone()), s);
    }
}

pub(super) struct CachedSpec {
    pub(super) path: Arc<Path>,
    pub(super) stamp: Stamp,
    pub(super) parsed: Parsed,
}

impl Scheduler {
    /// Merge what commands wrote to the state file (pause, resume, …).
    pub(super) fn take_disk_changes(&mut self) {
        if !self.store.changed_on_disk() {
            return;
        }
        match self.store.read() {
            Ok(disk) => {
                let before: BTreeMap<String, Activity> = self.state.jobs.iter().map(|(k, v)| (k.clone(), v.state)).collect();
                for id in self.state.merge_from_disk(disk) {
                    let Some(st) = self.state.jobs.get(&id) else { continue };
                    if let Some(e) = self.jobs.get_mut(&id) {
                        let schedule = self.schedules.lock().ok().and_then(|mut c| c.get(&e.spec.cron, e.spec.tz));
                        e.next = schedule.and_then(|s| s.next_after(st.cursor));
                    }
                    if before.get(&id) != Some(&st.state) {
                        info!(job = %id, state = st.state.as_str(), "job state changed");
                        let event = SchedulerEvent::StateChanged {
                            job_id: id.clone(),
                            state: st.state,
                        };
                        self.emit(&event);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the scheduler state file; keeping the state in memory");
            }
        }
    }

    /// Check the spec files and the state file for changes; reload what
    /// changed.
    pub(super) fn rescan(&mut self, now: DateTime<Utc>) {
        self.take_disk_changes();
        let dir = self.root.jobs_dir.clone();
        // Files added, removed or renamed into place (how editors, `mv` and
        // atomic writers replace a file) change the directory: look at every
        // file then. Files edited in place do not: look at every file every
        // `rescan_every`, or less often when that costs too much.
        let dir_modified = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        if self.built && dir_modified == self.dir_modified && now < self.next_full_scan {
            return;
        }
        let started = std::time::Instant::now();
        let listing = scan_spec_files(&dir);
        self.last_scan = Some(started.elapsed());
        let mut changed = false;
        let mut known = 0;
        for (name, stamp) in &listing {
            if let Some(c) = self.specs.get(name) {
                known += 1;
                if c.stamp == *stamp {
                    continue;
                }
            }
            changed = true;
            let path: Arc<Path> = Arc::from(dir.join(name));
            let parsed = self.parse_spec(spec::load_file(&path), &path);
            self.specs.insert(name.clone(), CachedSpec { path, stamp: *stamp, parsed });
        }
        if known < self.specs.len() {
            let present: HashSet<&OsString> = listing.iter().map(|(n, _)| n).collect();
            self.specs.retain(|name, _| present.contains(name));
            changed = true;
        }
        if changed || !self.built {
            self.built = true;
            self.rebuild(now);
        }
        let cost = self.last_scan.map(|d| d * FULL_SCAN_COST_FACTOR).unwrap_or_default();
        let cost = TimeDelta::from_std(cost).unwrap_or(TimeDelta::MAX);
        self.next_full_scan = now + self.opts.rescan_every.max(cost);
        self.dir_modified = dir_modified;
    }

    pub(super) fn parse_spec(&self, f: SpecFile, path: &Arc<Path>) -> Parsed {
        match &f.spec {
            Err(e) => {
                info!(path = %f.path.display(), code = %e.code, error = %e.message, "invalid job spec; the other jobs keep their schedules");
                self.emit(&SchedulerEvent::SpecInvalid {
                    path: f.path.clone(),
                    code: e.code,
                    message: e.message.clone(),
                });
                Parsed::Invalid
            }
            Ok(s) => match JobPlan::from_spec(s) {
                None => Parsed::Manual(s.id.clone()),
                Some(plan) => {
                    let spec = CronSpec {
                        id: plan.id,
                        cron: Box::from(plan.schedule.expr()),
                        tz: plan.schedule.timezone(),
                        catchup: plan.catchup,
                        starting_deadline: plan.starting_deadline,
                        max_parallel_runs: plan.max_parallel_runs,
                        target: self.intern_target(&s.target),
                        path: path.clone(),
                        sha256: f
                            .sha256
                            .as_deref()
                            .and_then(|h| h.strip_prefix("sha256:"))
                            .and_then(|h| hex::decode(h).ok())
                            .and_then(|d| <[u8; 32]>::try_from(d).ok()),
                        plan_key: crate::jobs::plan_key(s),
                    };
                    if let Ok(mut c) = self.schedules.lock() {
                        c.put(plan.schedule);
                    }
                    Parsed::Cron(Arc::new(spec))
                }
            },
        }
    }

    /// The target record of a cron job's records, one shared copy per
    /// distinct target (10,000 jobs of one blueprint hold one).
    pub(super) fn intern_target(&self, t: &crate::spec::Target) -> Arc<crate::runs::TargetRecord> {
        let key = (t.kind.clone(), t.id.clone(), t.version.clone());
        let Ok(mut map) = self.targets.lock() else {
            return Arc::new(target_record(t));
        };
        map.entry(key).or_insert_with(|| Arc::new(target_record(t))).clone()
    }

    /// Rebuild the job table from the cached specs and reconcile the state.
    pub(super) fn rebuild(&mut self, now: DateTime<Utc>) {
        let declared = crate::spec::declared_ids(self.specs.values().filter_map(|c| match &c.parsed {
            Parsed::Cron(s) => Some((s.id.as_str(), &*c.path)),
            Parsed::Manual(id) => Some((id.as_str(), &*c.path)),
            Parsed::Invalid => None,
        }));
        let by_path: BTreeMap<&Path, &CachedSpec> = self.specs.values().map(|c| (&*c.path, c)).collect();
        let by_id: BTreeMap<String, Vec<&CachedSpec>> = declared
            .iter()
            .map(|(id, paths)| (id.clone(), paths.iter().filter_map(|p| by_path.get(p.as_path()).copied()).collect()))
            .collect();
        let mut duplicates = BTreeMap::new();
        let mut jobs = BTreeMap::new();
        let mut old = std::mem::take(&mut self.jobs);
        for (id, specs) in by_id {
            if specs.len() > 1 {
                let mut paths: Vec<PathBuf> = specs.iter().map(|c| c.path.to_path_buf()).collect();
                paths.sort();
                if self.duplicates.get(&id) != Some(&paths) {
                    info!(job = %id, files = ?paths, "job id declared by several spec files; not scheduled");
                    self.emit(&SchedulerEvent::DuplicateId {
                        job_id: id.clone(),
                        paths: paths.clone(),
                    });
                }
                duplicates.insert(id, paths);
                continue;
            }
            let Parsed::Cron(s) = &specs[0].parsed else { continue };
            let previous = old.remove(&id);
            let same = previous.as_ref().is_some_and(|p| Arc::ptr_eq(&p.spec, s));
            // An unchanged job keeps its next time (its cursor moves only
            // where `next` is computed again), so a rebuild compiles only
            // the schedules of new or changed jobs.
            let next = previous.filter(|_| same).and_then(|p| p.next);
            jobs.insert(id, (Entry { spec: s.clone(), next }, same));
        }
        self.duplicates = duplicates;
        if let Ok(mut targets) = self.targets.lock() {
            targets.retain(|_, t| Arc::strong_count(t) > 1);
        }
        let mut dirty = false;
        for id in old.keys() {
            info!(job = %id, "cron job unloaded (spec removed, invalid, duplicated or no longer cron)");
            self.emit(&SchedulerEvent::JobUnloaded { job_id: id.clone() });
        }
        // Jobs in the state that are not scheduled now: times from now on
        // are not missed times if they come back.
        for (id, st) in self.state.jobs.iter_mut() {
            if !jobs.contains_key(id) && st.unloaded_at.is_none() {
                st.unloaded_at = Some(now);
                dirty = true;
            }
        }
        let mut table = BTreeMap::new();
        let mut loaded = Vec::new();
        for (id, (mut entry, same)) in jobs {
            let fp = entry.spec.fingerprint();
            let mut cursor_moved = false;
            let st = match self.state.jobs.get_mut(&id) {
                None => {
                    dirty = true;
                    self.state.jobs.entry(id.clone()).or_insert_with(|| JobState::new(now, fp.clone()))
                }
                Some(st) => {
                    if st.schedule != fp {
                        if !st.schedule.is_empty() {
                            info!(job = %id, from = %st.schedule, to = %fp, "schedule changed; counting from now");
                            st.cursor = st.cursor.max(now);
                        }
                        st.schedule = fp.clone();
                        dirty = true;
                        cursor_moved = true;
                    }
                    if st.unloaded_at.take().is_some() {
                        st.cursor = st.cursor.max(now);
                        dirty = true;
                        cursor_moved = true;
                    }
                    st
                }
            };
            if same && !cursor_moved {
                table.insert(id, entry);
                continue;
            }
            let Some(schedule) = self.schedules.lock().ok().and_then(|mut c| c.get(&entry.spec.cron, entry.spec.tz)) else {
                table.insert(id, entry);
                continue;
            };
            entry.next = schedule.next_after(st.cursor);
            if !same {
                let next = schedule.next_after(now.max(st.cursor)).map(|t| schedule.fire_time(t));
                info!(job = %id, cron = schedule.expr(), timezone = schedule.timezone().name(), state = st.state.as_str(), "cron job loaded");
                let event = SchedulerEvent::JobLoaded {
                    job_id: id.clone(),
                    cron: schedule.expr().to_string(),
                    timezone: schedule.timezone().name().to_string(),
                    state: st.state,
                    next_fire: next.as_ref().map(|n| rfc3339(n.utc)),
                    next_fire_local: next.map(|n| n.local),
                };
                if let Some(o) = &self.opts.observer {
                    o(&event);
                }
                loaded.push(PrepareJob {
                    job_id: id.clone(),
                    path: entry.spec.path.to_path_buf(),
                    plan_key: entry.spec.plan_key,
                });
            }
            table.insert(id, entry);
        }
        self.jobs = table;
        if !loaded.is_empty() {
            self.launcher.prepare(loaded);
        }
        if dirty {
            self.persist();
        }
        // Threads for the largest group of jobs sharing their next time.
        let mut groups: HashMap<DateTime<Utc>, usize> = HashMap::new();
        for (id, e) in &self.jobs {
            if let Some(t) = e.next
                && self.state.jobs.get(id).is_some_and(|s| s.state == Activity::Active)
            {
                *groups.entry(t).or_default() += 1;
            }
        }
        self.launcher.reserve(groups.values().copied().max().unwrap_or(0));
    }
}

fn target_record(t: &crate::spec::Target) -> crate::runs::TargetRecord {
    crate::runs::TargetRecord {
        kind: t.kind.clone(),
        id: t.id.clone(),
        requirement: t.version.clone(),
        ..Default::default()
    }
}

/// `*.job.yaml` / `*.job.yml` files of `dir` (what [`spec::discover`]
/// reads) by file name, with their stamps: one `getdents` pass and one
/// `fstatat` per entry (symlinks followed), no parsing.
pub(super) fn scan_spec_files(dir: &Path) -> Vec<(OsString, Stamp)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let bytes = name.as_encoded_bytes();
            if !(bytes.ends_with(b".job.yaml") || bytes.ends_with(b".job.yml")) {
                return None;
            }
            let meta = match e.file_type() {
                Ok(t) if t.is_symlink() => std::fs::metadata(e.path()),
                _ => e.metadata(),
            };
            let meta = meta.ok().filter(|m| m.is_file())?;
            Some((name, Stamp::of(&meta)))
        })
        .collect()
}
