//! Discover: a sketch's build folder written (hooks, merged `.ino`, its files) and its
//! libraries found as the reference finds them.

use super::*;

/// A sketch's translation units besides the merged `.ino.cpp`, in the build folder, in
/// the order the reference queues them for discovery: the sketch folder's own, then
/// `src/`, each by name.
pub(super) fn sketch_sources(sketch: &Sketch, build: &Path, generated: &[PathBuf]) -> Vec<PathBuf> {
    let mut rel: Vec<&PathBuf> = sketch.sources().chain(generated).collect();
    rel.sort_by_key(|p| (p.components().count() > 1, (*p).clone()));
    rel.into_iter().map(|p| build.join(p)).collect()
}

impl Build<'_> {
    /// Write the sketch's build folder (merged `.ino.cpp`, its other files) and find
    /// its libraries as the reference does.
    pub(super) fn discover(&self, i: usize) -> Result<(PathBuf, PathBuf, Vec<PathBuf>, SketchDiscovery)> {
        let sketch = &self.setup.sketches[i];
        let dir = self.setup.target.sketch_dir(sketch);
        let sketch_build = dir.join("sketch");
        ensure_dir(&sketch_build)?;
        // The platform's pre-build hooks first, as in the reference: what they write in
        // sketch/ is compiled with the sketch and searched for its libraries.
        let own: Vec<PathBuf> = sketch.sources().cloned().chain(std::iter::once(PathBuf::from(format!("{}.ino.cpp", sketch.name)))).collect();
        let hook_ctx = Context::new(self.setup.sketch_props(i), &dir, &format!("{}.ino", sketch.name), &sketch.dir);
        let generated = match hooks::prepare(&self.setup.runner, &hook_ctx, SKETCH_HOOKS, Some(&sketch.dir), &own) {
            Ok(p) => {
                if p.ran {
                    for s in &p.sources {
                        self.cache.invalidate(&sketch_build.join(s));
                    }
                }
                p.sources
            }
            Err(message) => {
                let error = crate::discover::DiscoveryError { missing: String::new(), command: Vec::new(), message };
                return Ok((dir, sketch_build, Vec::new(), SketchDiscovery { error: Some(error), ..Default::default() }));
            }
        };
        let merged_path = sketch_build.join(format!("{}.ino.cpp", sketch.name));
        let merged = self.shared.merged_cpp(sketch, &self.setup.fw_dir, self.setup.includes.macros())?;
        if write_if_changed(&merged_path, &merged)? {
            self.cache.invalidate(&merged_path);
        }
        for rel in &sketch.extra_files {
            let src = sketch.dir.join(rel);
            let dst = sketch_build.join(rel);
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            if let Some(parent) = dst.parent() {
                ensure_dir(parent)?;
            }
            if write_if_changed(&dst, &bytes)? {
                self.cache.invalidate(&dst);
            }
        }
        // The reference's queue: the merged sketch, then its other sources. The
        // sketch is preprocessed through its stand-in when it has one (examples of
        // one library share it, and so one run); a stop the stand-in cannot explain
        // is told in the sketch's own words, from a run of the sketch itself.
        let others = sketch_sources(sketch, &sketch_build, &generated);
        let ctx = self.setup.preprocess_ctx(i);
        let queue = |first: &Path| std::iter::once(first.to_path_buf()).chain(others.iter().cloned()).collect::<Vec<_>>();
        let stand_in = self.stand_in(&merged, &sketch_build)?;
        let mut d = self.discoverer.sketch(&self.setup.runner, &queue(stand_in.as_deref().unwrap_or(&merged_path)), ctx)?;
        if stand_in.is_some() && d.error.is_some() {
            let (seconds, runs) = (d.seconds, d.runs);
            d = self.discoverer.sketch(&self.setup.runner, &queue(&merged_path), ctx)?;
            d.seconds += seconds;
            d.runs += runs;
        }
        if self.setup.session.opts.verbose {
            for &l in &d.libraries {
                let lib = &&self.setup.index.libraries[l];
                // Worded as the reference builder words it (it names a library by its folder).
                eprintln!("{}: Using library {} at version {} in folder: {}", sketch.name, lib.dir_name, lib.version, lib.path.display());
            }
        }
        Ok((dir, merged_path, generated, d))
    }

    /// The stand-in source for a merged sketch's discovery (`discover::stand_in`),
    /// written once per content in the framework folder.
    pub(super) fn stand_in(&self, merged: &[u8], sketch_build: &Path) -> Result<Option<PathBuf>> {
        let Some(text) = std::str::from_utf8(merged).ok().and_then(|t| crate::discover::stand_in(t, sketch_build)) else {
            return Ok(None);
        };
        let dir = self.setup.fw_dir.join("discover");
        ensure_dir(&dir)?;
        let path = dir.join(format!("{}.cpp", &hex(&crate::cache::hash::Hasher::new(crate::cache::keys::domain::STAND_IN).str(&text).finish())[..16]));
        if write_if_changed(&path, text.as_bytes())? {
            self.cache.invalidate(&path);
        }
        Ok(Some(path))
    }
}
