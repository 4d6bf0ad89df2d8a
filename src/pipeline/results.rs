//! Results: one target's report after its graph ran, with the phase clocks.

use super::*;

/// When each kind of step first started and last ended: the phases overlap, so each
/// phase's time is its own span, and the spans need not add up to the total.
#[derive(Default)]
pub(super) struct Clocks {
    spans: Mutex<BTreeMap<&'static str, (Instant, Instant)>>,
}

impl Clocks {
    pub(super) fn record(&self, phase: &'static str, start: Instant) {
        let end = Instant::now();
        let mut spans = self.spans.lock().unwrap();
        let span = spans.entry(phase).or_insert((start, end));
        span.0 = span.0.min(start);
        span.1 = span.1.max(end);
    }

    pub(super) fn phase(&self, name: &'static str, count: usize) -> Phase {
        let seconds = self.spans.lock().unwrap().get(name).map(|(a, b)| (*b - *a).as_secs_f64()).unwrap_or(0.0);
        Phase { name, seconds, count }
    }
}

impl Build<'_> {
    /// This board's report, after the graph ran.
    pub(super) fn report(&self) -> Report {
        let setup = self.setup;
        let mut phases = setup.phases.clone();
        let board = &setup.board;
        let skipped = setup.skipped.clone();
        if self.setup.sketches.is_empty() {
            let results = report::in_argument_order(Vec::new(), &setup.kept_at, skipped);
            let seconds = setup.t_start.elapsed().as_secs_f64();
            phases.push(Phase { name: "total", seconds, count: results.len() });
            let totals = report::Totals { sketches: results.len(), skipped: results.len(), seconds, tool_processes: self.setup.runner.spawned(), ..Default::default() };
            let cache = report::CacheSummary { enabled: self.setup.store.is_some(), dir: self.setup.store.map(|s| s.root().to_path_buf()), hits: 0, misses: 0, remote: None };
            return Report {
                board: board.id.clone(),
                fqbn: board.fqbn.clone(),
                stage1_key: None,
                framework_dir: setup.fw_dir.clone(),
                archives: Vec::new(),
                units: Vec::new(),
                sketches: results,
                totals,
                cache,
                size_report: None,
                boards: Vec::new(),
                phases,
            };
        }
        phases.push(self.clocks.phase("discover", self.discoverer.preprocessor.runs.load(Ordering::Relaxed)));
        if self.planned_only.load(Ordering::SeqCst) {
            return Report::planned_only(&board.id, &board.fqbn, &setup.fw_dir, phases);
        }
        let libs = self.libs.get().map(Vec::as_slice).unwrap_or_default();
        let units: Vec<&Unit> = std::iter::once(&self.core).chain(libs.iter()).collect();
        let stage1_key = hex(&crate::cache::keys::stage1(units.iter().map(|u| u.state.lock().unwrap().key)));
        let results: Vec<SketchResult> = std::mem::take(&mut *self.results.lock().unwrap()).into_values().collect();
        phases.push(self.clocks.phase("stage1_archives", units.len()));
        phases.push(self.clocks.phase("stage2_sketches", results.len()));
        if self.setup.chip.is_some() {
            phases.push(self.clocks.phase("smoke_run", results.iter().filter(|r| r.run.is_some()).count()));
        }
        let results = report::in_argument_order(results, &setup.kept_at, skipped);

        let unit_results: Vec<UnitResult> = units.iter().map(|u| u.result()).collect();
        let mut totals = report::Totals::count(&results, &unit_results);
        totals.tool_processes = self.setup.runner.spawned() + self.setup.toolchain.processes_started();
        // The session's one store: every target's report gives its counts so far
        // (flushed and evicted once, when the session closes).
        let cache_summary = self.setup.session.cache_summary();
        if let Some(r) = &cache_summary.remote {
            phases.push(Phase { name: "remote_cache", seconds: r.seconds, count: r.requests() as usize });
        }
        totals.seconds = setup.t_start.elapsed().as_secs_f64();
        phases.push(Phase { name: "total", seconds: totals.seconds, count: results.len() });
        Report {
            board: board.id.clone(),
            fqbn: board.fqbn.clone(),
            stage1_key: Some(stage1_key),
            framework_dir: setup.fw_dir.clone(),
            archives: units.iter().filter_map(|u| u.archive.clone()).collect(),
            units: unit_results,
            sketches: results,
            totals,
            cache: cache_summary,
            size_report: None,
            boards: Vec::new(),
            phases,
        }
    }
}
