//! Spec watching: a cheap stamp scan of the jobs directory, parsing only
//! the files that changed, and rebuilding the loaded cron jobs from them.

use super::*;

/// What one spec file holds, as last read.
pub(super) enum Parsed {
    Cron(Arc<CronSpec>),
    Manual(String),
    Invalid,
}

/// What the scheduler keeps of a cron job's spec: its plan, and the parsed
/// file a run starts from while the file is unchanged ([`Fire::spec_now`]).
pub(super) struct CronSpec {
    pub(super) plan: JobPlan,
    pub(super) target: crate::runs::TargetRecord,
    pub(super) prepared: PreparedSpec,
}

impl CronSpec {
    pub(super) fn path(&self) -> &Path {
        &self.prepared.file.path
    }

    pub(super) fn spec_sha256(&self) -> String {
        self.prepared.file.sha256.clone().unwrap_or_default()
    }
}

pub(super) struct CachedSpec {
    pub(super) path: PathBuf,
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
                        e.next = e.spec.plan.schedule.next_after(st.cursor);
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
            let path = dir.join(name);
            let parsed = self.parse_spec(spec::load_file(&path), *stamp);
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

    pub(super) fn parse_spec(&self, f: SpecFile, stamp: Stamp) -> Parsed {
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
                Some(plan) => Parsed::Cron(Arc::new(CronSpec {
                    plan,
                    target: crate::runs::TargetRecord {
                        kind: s.target.kind.clone(),
                        id: s.target.id.clone(),
                        requirement: s.target.version.clone(),
                        ..Default::default()
                    },
                    prepared: PreparedSpec { stamp, file: Arc::new(f) },
                })),
            },
        }
    }

    /// Rebuild the job table from the cached specs and reconcile the state.
    pub(super) fn rebuild(&mut self, now: DateTime<Utc>) {
        let declared = crate::spec::declared_ids(self.specs.values().filter_map(|c| match &c.parsed {
            Parsed::Cron(s) => Some((s.plan.id.as_str(), c.path.as_path())),
            Parsed::Manual(id) => Some((id.as_str(), c.path.as_path())),
            Parsed::Invalid => None,
        }));
        let by_path: BTreeMap<&Path, &CachedSpec> = self.specs.values().map(|c| (c.path.as_path(), c)).collect();
        let by_id: BTreeMap<String, Vec<&CachedSpec>> = declared
            .iter()
            .map(|(id, paths)| (id.clone(), paths.iter().filter_map(|p| by_path.get(p.as_path()).copied()).collect()))
            .collect();
        let mut duplicates = BTreeMap::new();
        let mut jobs = BTreeMap::new();
        let mut old = std::mem::take(&mut self.jobs);
        for (id, specs) in by_id {
            if specs.len() > 1 {
                let mut paths: Vec<PathBuf> = specs.iter().map(|c| c.path.clone()).collect();
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
            jobs.insert(id, (Entry { spec: s.clone(), next: None }, same));
        }
        self.duplicates = duplicates;
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
            let fp = entry.spec.plan.fingerprint();
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
                    }
                    if st.unloaded_at.take().is_some() {
                        st.cursor = st.cursor.max(now);
                        dirty = true;
                    }
                    st
                }
            };
            let schedule = &entry.spec.plan.schedule;
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
            }
            if !same {
                loaded.push((id.clone(), entry.spec.prepared.file.clone()));
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
