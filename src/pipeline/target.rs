//! What to build: a plain `Target` per board (or group of PlatformIO envs) with its
//! sketches, properties and out folder. How to build it is the `Session`'s.

use std::path::PathBuf;

use crate::arduino::sketch::Sketch;

/// One board's build: ninja's targets, kept apart from its `BuildConfig` (the `Session`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub board: String,
    pub sketches: Vec<PathBuf>,
    pub library: Vec<PathBuf>,
    pub libraries: Vec<PathBuf>,
    pub build_properties: Vec<(String, String)>,
    /// Per sketch folder: build properties set on top of `build_properties` for that
    /// sketch's own work but not the core's, so sketches that differ only there share
    /// one stage 1 (PlatformIO projects: their `-I src -I include`, `build_src_flags`).
    pub sketch_properties: Vec<(PathBuf, SketchProperties)>,
    pub out: PathBuf,
    /// Honour `// @filter` comments: skip sketches that are not for this board.
    pub filter: bool,
    /// `--memory-class`: the board's memory class for filters, instead of the one
    /// derived from its RAM.
    pub memory_class: Option<crate::filter::MemoryClass>,
    /// Write compile_commands.json and stop before compiling anything.
    pub only_compiledb: bool,
    /// `--optimize-for-debug`: `compiler.optimization_flags` from its `.debug` variant
    /// instead of `.release` (see `platform::apply_build_profile`).
    pub optimize_for_debug: bool,
}

/// A sketch's own build properties (`Target::sketch_properties`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SketchProperties {
    /// For everything built for the sketch but the core: its discovery, compiles and
    /// link, and the library units it uses (sketches with equal ones share them).
    pub all: Vec<(String, String)>,
    /// On top of `all`, for the sketch's own sources only: its compiles, its discovery.
    pub sources: Vec<(String, String)>,
    /// The folder its output folder goes in, instead of the target's `out` (a project
    /// env's firmware stays under OUT/projects/PROJECT/ENV however envs are grouped).
    pub out: Option<PathBuf>,
}

impl Target {
    /// Where a sketch's output folder goes (see `SketchProperties::out`).
    pub(super) fn sketch_dir(&self, sketch: &Sketch) -> PathBuf {
        super::sketch_out_dir(self.own(sketch).and_then(|s| s.out.as_deref()).unwrap_or(&self.out), sketch)
    }

    /// The sketch's own properties, when the target gives it any.
    pub(super) fn own(&self, sketch: &Sketch) -> Option<&SketchProperties> {
        self.sketch_properties.iter().find(|(p, _)| *p == sketch.dir || p.parent() == Some(sketch.dir.as_path())).map(|(_, s)| s)
    }
}
