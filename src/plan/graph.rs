//! The build graph's steps, as data. A step names what it works on by index into the
//! build's tables (units, sketches); the scheduler (`exec::scheduler`) holds their
//! dependencies and pools, and the pipeline runs each step. Stage 1 (core and
//! libraries) and stage 2 (discovery, sketch compiles, links) are pools, not phases:
//! a sketch compile runs while the core compiles, and a link waits only for its own
//! objects and the units it links.
//!
//! ```text
//! Discover(s)... ──► Plan ──► adds: Compile(lib u, j) ──► Finish(lib u) ──┐
//! Compile(core, j) ──► Finish(core) ─────────────────────────────────────┤
//!                    Plan also adds: CompileSketch(s, j) ────────────────┴─► Link(s) ─► Run(s)
//! ```

use crate::exec::scheduler::Pool;

/// Which stage-1 unit a step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitId {
    Core,
    Library(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Preprocess sketch `s` (and the libraries it pulls in) to find its libraries.
    Discover(usize),
    /// After every discovery: plan library units and sketch steps, and add them.
    Plan,
    /// Compile job `j` of a stage-1 unit.
    Compile(UnitId, usize),
    /// Archive and stamp a unit, after its compiles.
    Finish(UnitId),
    /// Compile job `j` of sketch `s`.
    CompileSketch(usize, usize),
    /// Link, objcopy, bootloader merge and size of sketch `s`.
    Link(usize),
    /// `--smoke-run`: boot sketch `s`'s firmware in the simulator, after its link.
    Run(usize),
}

impl Step {
    pub fn pool(&self) -> Pool {
        match self {
            Step::Compile(..) | Step::Finish(_) => Pool::Stage1,
            _ => Pool::Stage2,
        }
    }

    /// Among ready steps, lower runs first: discovery decides what else exists, and
    /// the core, which needs nothing from it, fills the stage-1 pool beside it (so a
    /// core with `--framework-jobs 1` keeps one worker busy while discovery, often
    /// waiting on a run another sketch started, holds the other); a unit's last step
    /// unblocks links, stage 1 feeds every link, a ready link finishes a sketch (and
    /// frees its memory) before more sketches start.
    pub fn priority(&self) -> u32 {
        match self {
            Step::Discover(_) | Step::Plan | Step::Compile(UnitId::Core, _) => 0,
            Step::Finish(_) => 1,
            Step::Compile(..) => 2,
            Step::Link(_) | Step::Run(_) => 3,
            Step::CompileSketch(..) => 4,
        }
    }
}
