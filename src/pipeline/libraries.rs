//! Libraries: one stage-1 unit per library, include path and sketch settings, in
//! first-use order, precompiled libraries as arduino-cli links them.

use super::*;

/// Each library unit's index among the units, by (library, include path, sketch settings).
pub(super) type LibraryUnits = BTreeMap<(usize, Vec<PathBuf>, String), usize>;

impl Build<'_> {
    /// The library units the discovered sketches use (see `Discoverer::unit_include_dirs`).
    pub(super) fn plan_libraries(&self, discovered: &[(PathBuf, PathBuf, Vec<PathBuf>, SketchDiscovery)]) -> Result<(Vec<Unit>, LibraryUnits)> {
        // A unit per library, include path and sketch settings (the first sketch using
        // it stands for the settings).
        let mut lib_units: Vec<((usize, Vec<PathBuf>, String), usize)> = Vec::new();
        for (i, (_, _, _, d)) in discovered.iter().enumerate() {
            for &l in &d.libraries {
                let unit = (l, d.library_includes[&l].clone(), self.setup.overlay_id(i).to_string());
                if !lib_units.iter().any(|(u, _)| *u == unit) {
                    lib_units.push((unit, i));
                }
            }
        }
        let mut libs: Vec<Unit> = Vec::new();
        let mut lib_unit_index = LibraryUnits::new();
        for ((l, inc, overlay), first) in &lib_units {
            let lib = &&self.setup.index.libraries[*l];
            let mut name = format!("{}-{}", slug(&lib.dir_name), &hex(&crate::cache::keys::library_unit_folder(inc))[..8]);
            if !overlay.is_empty() {
                name = format!("{name}-{overlay}");
            }
            let dir = self.setup.fw_dir.join("libraries").join(name);
            let unit_ctx = self.setup.unit_ctx(*first);
            // A precompiled library, on a platform that links them (it has
            // compiler.libraries.ldflags), as arduino-cli: its archives for this MCU go on
            // the link, and with `precompiled=full` its sources are then not compiled.
            let precompiled = match self.setup.props.contains("compiler.libraries.ldflags") {
                true => lib.precompiled_folder(unit_ctx.props.get_or_empty("build.mcu"), &unit_ctx.command("recipe.cpp.o.pattern", &[])?),
                false => None,
            };
            let (precompiled, precompiled_objects) = match &precompiled {
                Some(folder) => {
                    let (flags, objects) = lib.precompiled_link(folder);
                    let mut h = crate::cache::hash::Hasher::new(crate::cache::keys::domain::PRECOMPILED);
                    for f in crate::arduino::library::files_in(folder) {
                        h.str(&f.display().to_string()).bytes(&std::fs::read(&f).map_err(|e| Error::io(&f, e))?);
                    }
                    (Some((flags, h.finish())), objects)
                }
                None => (None, Vec::new()),
            };
            let mut sources = if precompiled.is_some() && lib.precompiled_with_sources { Vec::new() } else { lib.sources() };
            plan::reference_order(&mut sources);
            let mut jobs = Vec::new();
            for src in &sources {
                let rel = src.strip_prefix(&lib.src_dir).unwrap_or(src);
                jobs.push(unit_ctx.compile(src, &object_path(&dir, rel), inc)?);
            }
            let objects: Vec<PathBuf> = jobs.iter().map(|j| j.object.clone()).collect();
            let (archive, mut link_objects) = if lib.dot_a_linkage && !jobs.is_empty() {
                (Some(dir.join(format!("{}.a", slug(&lib.dir_name)))), Vec::new())
            } else {
                (None, objects)
            };
            link_objects.extend(precompiled_objects);
            lib_unit_index.insert((*l, inc.clone(), overlay.clone()), libs.len());
            libs.push(Unit { name: lib.name.clone(), kind: "library", dir, jobs, archive, link_objects, precompiled, state: Mutex::default() });
        }
        Ok((libs, lib_unit_index))
    }
}
