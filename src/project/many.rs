//! `compile-many` over PlatformIO projects beside sketches: every env of every project
//! becomes a sketch of a build target, and envs whose board and build settings are
//! equal are one target, so they share one stage 1. All targets (the plain sketches'
//! boards too) go into one build graph, as a board matrix does (`matrix.rs`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pipeline::{self, Request, Shared};
use crate::report::Report;


/// One build target of the run: a request and, for project envs, each sketch folder's label.
struct Target {
    req: Request,
    labels: Vec<(PathBuf, String)>,
}

/// Build `sketches` for every board of `boards` (the default board when none) and every
/// default env of `projects`, in one graph; `base` carries the shared settings.
pub fn run(
    base: &Request,
    boards: &[String],
    sketches: Vec<PathBuf>,
    projects: &[PathBuf],
) -> Result<Report> {
    let t_start = std::time::Instant::now();
    let mut targets: Vec<Target> = Vec::new();
    if !sketches.is_empty() {
        let boards = if boards.is_empty() {
            vec![base.board.clone()]
        } else {
            boards.to_vec()
        };
        for b in boards {
            let name = if b.is_empty() { "default" } else { b.as_str() };
            targets.push(Target {
                req: Request {
                    board: b.clone(),
                    sketches: sketches.clone(),
                    out: crate::matrix::board_out_dir(&base.out, name),
                    ..base.clone()
                },
                labels: Vec::new(),
            });
        }
    }
    let shared = Shared::for_platforms(crate::platform::discover(&base.hardware)?);
    let mut used_names: Vec<String> = Vec::new();
    // Per board and shared settings: the folders its core reads headers from.
    let mut core_folders: Vec<((String, Vec<(String, String)>), Vec<PathBuf>)> = Vec::new();
    for project in projects {
        let name = project_folder_name(project, &mut used_names);
        let project_out = base.out.join("projects").join(&name);
        for env in super::prepare_in(project, &[], &project_out, &base.out.join("projects"))? {
            for w in &env.warnings {
                crate::errln!("warning: {w}; ignored");
            }
            // Envs of different projects differ in their own folders (`-I src`, ...); as
            // sketch properties those leave the core alone, so the envs share one stage 1,
            // unless a folder shadows a header the core reads.
            let mut props = env.shared_properties.clone();
            props.extend(base.build_properties.iter().cloned());
            let key = (env.fqbn.clone(), props.clone());
            let folders = match core_folders.iter().find(|(k, _)| *k == key) {
                Some((_, f)) => f.clone(),
                None => {
                    let probe = Request { board: env.fqbn.clone(), build_properties: props.clone(), ..base.clone() };
                    let f = pipeline::core_header_folders(&probe, &shared)?;
                    core_folders.push((key, f.clone()));
                    f
                }
            };
            let search: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
            let own = env.project_includes.join(" ");
            let shareable = pipeline::flags_the_core_ignores(&own, &search).len() == env.project_includes.len();
            let sketch_props = if shareable {
                pipeline::SketchProperties { all: env.own_properties.clone(), sources: env.src_properties.clone(), out: Some(project_out.join(&env.env)) }
            } else {
                props = env.build_properties.clone();
                props.extend(base.build_properties.iter().cloned());
                pipeline::SketchProperties { all: Vec::new(), sources: env.src_properties.clone(), out: Some(project_out.join(&env.env)) }
            };
            let mut libraries = env.libraries.clone();
            libraries.extend(base.libraries.iter().cloned());
            let mut library = env.library.clone();
            library.extend(base.library.iter().cloned());
            // Equal board and settings: the same stage 1, so one target.
            let same = targets.iter_mut().find(|t| {
                !t.labels.is_empty()
                    && t.req.board == env.fqbn
                    && t.req.build_properties == props
                    && t.req.libraries == libraries
                    && t.req.library == library
            });
            match same {
                Some(t) => {
                    t.req.sketches.push(env.sketch.clone());
                    t.req.sketch_properties.push((env.sketch.clone(), sketch_props));
                    t.labels.push((env.sketch.clone(), env.label.clone()));
                }
                None => targets.push(Target {
                    req: Request {
                        board: env.fqbn.clone(),
                        sketches: vec![env.sketch.clone()],
                        sketch_properties: vec![(env.sketch.clone(), sketch_props)],
                        build_properties: props,
                        libraries,
                        library,
                        out: project_out.join(&env.env),
                        ..base.clone()
                    },
                    labels: vec![(env.sketch.clone(), env.label.clone())],
                }),
            }
        }
    }
    if targets.is_empty() {
        return Err(Error::usage("no sketches and no project envs to build; pass sketch folders or PlatformIO project folders"));
    }
    let reqs: Vec<Request> = targets.iter().map(|t| t.req.clone()).collect();
    let mut reports = pipeline::run_boards(&reqs, &shared)?;
    for (report, target) in reports.iter_mut().zip(&targets) {
        for s in &mut report.sketches {
            if let Some((_, label)) = target
                .labels
                .iter()
                .find(|(dir, _)| s.path == *dir || s.path.parent() == Some(dir.as_path()))
            {
                s.name = label.clone();
            }
        }
    }
    let outs = reqs.iter().map(|r| r.out.clone());
    crate::matrix::join_all(
        outs.zip(reports).collect(),
        &base.out,
        t_start.elapsed().as_secs_f64(),
    )
}

/// A project's folder under OUT/projects: its own name, numbered when two projects share it.
fn project_folder_name(project: &Path, used: &mut Vec<String>) -> String {
    let base = std::path::absolute(project)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "project".into());
    let mut name = base.clone();
    let mut n = 2;
    while used.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    used.push(name.clone());
    name
}
