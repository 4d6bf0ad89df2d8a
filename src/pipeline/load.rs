//! Load: resolve the target's board and properties, check its toolchain, index its
//! libraries, load and filter its sketches, prepare the framework folder (`Setup`).

use super::*;

/// Resolve the target's board, apply `--build-property`, check the toolchain (see
/// `Session::load`, which remembers the answer).
pub(super) fn load_board(req: &Target, platforms: &[platform::Platform], toolchain: &Toolchain, store: Option<&Store>) -> Result<Loaded> {
    let board = platform::resolve_board(platforms, &req.board)?;
    let mut notes = Vec::new();
    for (menu, option) in &board.defaulted_menus {
        notes.push(format!("board {}: menu '{menu}' not given, using its first option '{option}'", board.id));
    }
    let mut props = board.properties.clone();
    platform::apply_build_profile(&mut props, req.optimize_for_debug);
    for (k, v) in &req.build_properties {
        props.set(k.clone(), v.clone());
    }
    plan::check_recipes(&props, &board.platform.path.join("platform.txt"))?;
    let platform_id = format!("{}:{}", board.platform.vendor, board.platform.arch);
    crate::arduino::runtime_tools::check_referenced(&props, &platform_id, crate::arduino::runtime_tools::packages_dir().as_deref())?;

    let probe_ctx = Context::new(&props, Path::new("/"), "probe", Path::new("/"));
    // The compiler first (naming the tool property that should hold it), then every
    // tool the recipes name must exist: say so now, not per sketch, naming the
    // runtime.tools property that placed it when one did.
    if let Some(cc) = probe_ctx.command("recipe.cpp.o.pattern", &[])?.first().filter(|c| !toolchain.runner().tool_exists(c)) {
        return Err(crate::arduino::runtime_tools::missing_compiler(&props, "recipe.cpp.o.pattern", Path::new(cc)));
    }
    let mut recipes: Vec<String> = ["recipe.cpp.o.pattern", "recipe.c.o.pattern", "recipe.S.o.pattern", "recipe.ar.pattern", "recipe.c.combine.pattern", "recipe.size.pattern"]
        .iter()
        .filter(|r| !props.get_or_empty(r).is_empty())
        .map(|r| r.to_string())
        .collect();
    recipes.extend(plan::recipe_keys(&props, "recipe.objcopy.", ".pattern"));
    for recipe in recipes {
        let Some(t) = probe_ctx.command(&recipe, &[])?.into_iter().next() else { continue };
        if !toolchain.runner().tool_exists(&t) {
            let packages = crate::arduino::runtime_tools::packages_dir();
            return Err(crate::arduino::runtime_tools::missing_tool(&props, &platform_id, &recipe, Path::new(&t), packages.as_deref())
                .unwrap_or_else(|| crate::arduino::toolchain::not_installed(Path::new(&t))));
        }
    }
    let cpp = probe_ctx.command("recipe.cpp.o.pattern", &[])?;
    let cpp_compiler = toolchain.probe(Path::new(&cpp[0]), store)?;
    let user_set_cpp_flags = req.build_properties.iter().any(|(k, _)| k == "compiler.cpp.extra_flags");
    if cpp_compiler.gcc_major().is_some_and(|m| m < 6) && !user_set_cpp_flags && !props.get_or_empty("compiler.cpp.extra_flags").contains("DECIMAL_DIG") {
        let flags = format!("{} {DECIMAL_DIG_FIX}", props.get_or_empty("compiler.cpp.extra_flags")).trim().to_string();
        props.set("compiler.cpp.extra_flags", flags);
        notes.push(format!(
            "{} is GCC {} (< 6): adding compiler.cpp.extra_flags={DECIMAL_DIG_FIX} so the core's WString.cpp compiles",
            cpp_compiler.path.display(),
            cpp_compiler.gcc_major().unwrap_or(0)
        ));
    }
    if std::env::var_os("SOURCE_DATE_EPOCH").is_some() && !cpp_compiler.honours_source_date_epoch() {
        notes.push(format!(
            "SOURCE_DATE_EPOCH is set, but {} expands __DATE__ and __TIME__ from the clock (GCC 7 and later read the variable): objects that use them are keyed by the clock",
            cpp_compiler.path.display()
        ));
    }
    Ok(Loaded { board, props, cpp_compiler, notes })
}

impl<'r> Setup<'r> {
    pub(super) fn new(session: &'r Session, req: &'r Target, shared: &Shared, progress: &Progress) -> Result<Setup<'r>> {
        let t_start = Instant::now();
        let runner = Arc::new(session.runner.scope());
        let (toolchain, store) = (session.toolchain.scope(runner.clone()), session.store.as_ref());
        let loaded = session.load(req, &toolchain)?;
        let Loaded { board, props, cpp_compiler, notes } = &*loaded;
        let (board, props, cpp_compiler) = (board.clone(), props.clone(), cpp_compiler.clone());
        if session.opts.verbose {
            for n in notes {
                crate::errln!("note: {n}");
            }
        }
        let sketches = req.sketches.iter().map(|p| shared.sketch(p)).collect::<Result<Vec<Sketch>>>()?;
        if sketches.is_empty() {
            return Err(Error::usage("no sketches given; pass sketch folders, .ino files or folders that hold sketches"));
        }
        ensure_dir(&req.out)?;
        let phases = vec![Phase { name: "load", seconds: t_start.elapsed().as_secs_f64(), count: sketches.len() }];

        let props_hash = crate::cache::keys::framework_folder(props.iter());
        let fw_dir = req.out.join("framework").join(format!("{}-{}", slug(&board.fqbn), &hex(&props_hash)[..10]));
        ensure_dir(&fw_dir)?;
        let core_path = PathBuf::from(props.get_or_empty("build.core.path"));
        let variant_path = props.get("build.variant.path").map(PathBuf::from);
        let framework_dirs: Vec<PathBuf> = std::iter::once(core_path.clone()).chain(variant_path.clone()).collect();
        let system_dirs = cpp_compiler.system_dirs.clone();
        let index = LibraryIndex::build(&LibrarySources {
            explicit: &req.library,
            folders: &req.libraries,
            platform_dir: &board.platform.path,
        })?;
        // What the preprocessor knows up front: the recipe's -D flags and the compiler's
        // predefined macros for its machine flags, so scanning skips other platforms' branches.
        let includes = {
            let sample = Context::new(&props, &fw_dir, "probe", &fw_dir).command("recipe.cpp.o.pattern", &[])?;
            let mut macros = crate::cpp::macros::Macros::from_args(&sample);
            let machine: Vec<String> = sample.iter().filter(|a| a.starts_with("-m") || a.starts_with("-std=")).cloned().collect();
            macros.add_definitions(&toolchain.predefined_macros(&cpp_compiler, &machine, store));
            IncludeCache::with_macros(macros)
        };

        // Sketches whose @filter leaves this board out are skipped before discovery,
        // so their libraries are never built.
        let selection = if req.filter {
            let facts = crate::filter::BoardFacts::of_build(&board, &props, includes.macros(), req.memory_class);
            crate::filter::select(sketches, &facts)
        } else {
            crate::filter::Selection { kept_at: (0..sketches.len()).collect(), kept: sketches, ..Default::default() }
        };
        for w in &selection.warnings {
            eprintln!("{w}");
        }
        let skipped: Vec<(usize, SketchResult)> = selection
            .skipped
            .iter()
            .map(|(i, s, reason)| {
                let r = SketchResult::skipped(&s.name, &s.dir, &req.sketch_dir(s), reason.clone());
                progress.started();
                progress.finished(&r);
                (*i, r)
            })
            .collect();
        let chip = match &session.opts.smoke_run {
            Some(_) => Some(crate::emulator::Target::from_properties(&props, &board.id)?),
            None => None,
        };
        let overlays = selection.kept.iter().map(|sk| Overlay::for_sketch(req, sk, &props, &fw_dir)).collect();
        let fw_ctx = Context::new(&props, &fw_dir, "core", &fw_dir);
        // The framework folder is the build folder of the core and the libraries: what
        // the platform's hooks prepare in a build folder before compiling (STM32duino's
        // sketch/build.opt, read by every compile; arduino-pico's core/Updater_Signing.h,
        // included by a library) is prepared here too, as for a sketch without the
        // files those hooks look for.
        if !selection.kept.is_empty() {
            hooks::prepare(&runner, &fw_ctx, FRAMEWORK_HOOKS, None, &[])
                .map_err(|e| Error::usage(format!("board {}: a platform hook failed in {}: {e}", board.fqbn, fw_dir.display())))?;
        }
        Ok(Setup {
            session,
            target: req,
            overlays,
            t_start,
            chip,
            phases,
            preprocess_ctx: Context::new(&props, &fw_dir, "discover", &fw_dir),
            fw_ctx,
            board,
            props,
            store,
            toolchain,
            cpp_compiler,
            runner,
            fw_dir,
            framework_dirs,
            core_path,
            variant_path,
            system_dirs,
            index,
            includes,
            sketches: selection.kept,
            kept_at: selection.kept_at,
            skipped,
        })
    }
}

impl Overlay {
    pub(super) fn for_sketch(req: &Target, sketch: &Sketch, base: &crate::arduino::properties::Properties, fw_dir: &Path) -> Option<Overlay> {
        let set = req.own(sketch)?;
        let mut props = base.clone();
        let mut h = crate::cache::hash::Hasher::new(crate::cache::keys::domain::SKETCH_PROPERTIES);
        for (k, v) in set.all.iter().chain(&set.sources) {
            props.set(k, v.clone());
        }
        for (k, v) in &set.all {
            h.str(k).str(v);
        }
        Some(Overlay {
            preprocess_ctx: Context::new(&props, fw_dir, "discover", fw_dir),
            unit_ctx: std::sync::OnceLock::new(),
            all: set.all.clone(),
            props: std::sync::Arc::new(props),
            id: if set.all.is_empty() { String::new() } else { hex(&h.finish())[..8].to_string() },
        })
    }
}

impl Setup<'_> {
    pub(super) fn preprocess_ctx(&self, sketch: usize) -> &Context {
        self.overlays[sketch].as_ref().map_or(&self.preprocess_ctx, |o| &o.preprocess_ctx)
    }

    pub(super) fn unit_ctx(&self, sketch: usize) -> &Context {
        match &self.overlays[sketch] {
            None => &self.fw_ctx,
            Some(o) if o.all.is_empty() => &self.fw_ctx,
            Some(o) => o.unit_ctx.get_or_init(|| {
                let mut props = self.props.clone();
                for (k, v) in &o.all {
                    props.set(k, v.clone());
                }
                Context::new(&props, &self.fw_dir, "core", &self.fw_dir)
            }),
        }
    }

    pub(super) fn sketch_props(&self, sketch: usize) -> &crate::arduino::properties::Properties {
        self.overlays[sketch].as_ref().map_or(&self.props, |o| &o.props)
    }

    pub(super) fn overlay_id(&self, sketch: usize) -> &str {
        self.overlays[sketch].as_ref().map_or("", |o| o.id.as_str())
    }
}
