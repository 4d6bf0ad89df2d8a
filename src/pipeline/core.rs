//! Core: the core unit (core.a and the variant's objects), and which of a project's
//! own `-I` folders the core compiles can leave out.

use super::*;

/// Where the core compiles of `req`'s board find headers: the core, the variant and the
/// compiler's own folders (see `flags_the_core_ignores`).
pub fn core_header_folders(session: &Session, target: &Target) -> Result<Vec<PathBuf>> {
    let loaded = session.load(target, &session.toolchain)?;
    let Loaded { props, cpp_compiler, .. } = &*loaded;
    let mut dirs = vec![PathBuf::from(props.get_or_empty("build.core.path"))];
    dirs.extend(props.get("build.variant.path").map(PathBuf::from));
    dirs.extend(cpp_compiler.system_dirs.iter().cloned());
    Ok(dirs)
}

/// The core unit: the core's sources archived into core.a, the variant's linked as
/// objects. PlatformIO projects archive the core by file name (member order decides
/// where LTO places functions).
pub(super) fn plan_core(setup: &Setup, includes: &[PathBuf]) -> Result<Unit> {
    let (props, core_path, variant_path) = (&setup.props, setup.core_path.as_path(), setup.variant_path.as_deref());
    let core_dir = setup.fw_dir.join("core");
    let mut core_sources = plan::core_sources(core_path);
    if props.get_or_empty(CORE_ORDER_PROPERTY) == CORE_ORDER_BY_NAME {
        core_sources.sort();
    }
    // A project's own `-I` folders can change a core object only through a header they
    // shadow; when they shadow none, the core is compiled without them, so every project
    // on the board shares one set of core objects (and cache entries).
    let mut search: Vec<&Path> = vec![core_path];
    search.extend(variant_path);
    search.extend(setup.cpp_compiler.system_dirs.iter().map(PathBuf::as_path));
    let omit = flags_the_core_ignores(props.get_or_empty(PROJECT_INCLUDE_FLAGS_PROPERTY), &search);
    let compile = |s: &Path, obj: &Path| -> Result<plan::CompileJob> {
        let mut job = setup.fw_ctx.compile(s, obj, includes)?;
        job.args.retain(|a| !omit.contains(a));
        Ok(job)
    };
    let mut jobs = Vec::new();
    for s in &core_sources {
        let rel = s.strip_prefix(core_path).unwrap_or(s);
        jobs.push(compile(s, &object_path(&core_dir, rel))?);
    }
    let mut link_objects = Vec::new();
    if let Some(vp) = variant_path {
        for s in &plan::core_sources(vp) {
            let rel = s.strip_prefix(vp).unwrap_or(s);
            let obj = object_path(&core_dir.join("variant"), rel);
            link_objects.push(obj.clone());
            jobs.push(compile(s, &obj)?);
        }
    }
    Ok(Unit { name: "core".into(), kind: "core", archive: Some(core_dir.join("core.a")), dir: core_dir, jobs, link_objects, precompiled: None, state: Mutex::default() })
}

/// The `-IDIR` words of `flags` whose folders hold no file at a path (relative to the
/// folder) that also exists under one of `search`: a header found there instead of the
/// core's, the variant's or the compiler's own is the only way such a folder reaches a
/// core object. Folders that do shadow one are kept, so the build stays exact.
pub fn flags_the_core_ignores(flags: &str, search: &[&Path]) -> Vec<String> {
    fn shadows(root: &Path, dir: &Path, search: &[&Path]) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else { return false };
        rd.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                return shadows(root, &p, search);
            }
            let rel = p.strip_prefix(root).unwrap_or(&p);
            search.iter().any(|s| s.join(rel).exists())
        })
    }
    flags
        .split_whitespace()
        .filter(|f| f.strip_prefix("-I").is_some_and(|d| !shadows(Path::new(d), Path::new(d), search)))
        .map(String::from)
        .collect()
}
