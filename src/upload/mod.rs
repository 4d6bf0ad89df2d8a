//! `fbuild upload` and `fbuild deploy`: build if needed, then put the firmware on a
//! board through the platform's own upload recipe, as arduino-cli runs it
//! (recipe.rs), with the 1200-bps touch and port wait of serialutils (port.rs);
//! `deploy` then watches the port (monitor.rs).

pub mod monitor;
pub mod port;
pub mod recipe;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::CommonArgs;
use crate::error::{exit, Error, Result};
use crate::arduino::platform::Board;
use crate::report::Status;

/// Lines of a failed tool's output shown with the error.
const LAST_LINES: usize = 8;

/// A board's properties (platform, board, menus, runtime) with overrides applied.
pub fn resolve(spec: &str, hardware: &[PathBuf], overrides: &[(String, String)]) -> Result<Board> {
    let platforms = crate::arduino::platform::discover(hardware)?;
    let mut board = crate::arduino::platform::resolve_board(&platforms, spec)?;
    for (k, v) in overrides {
        board.properties.set(k.clone(), v.clone());
    }
    Ok(board)
}

/// Flags of `fbuild upload` (and of `deploy`'s upload).
#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The board's serial port (/dev/ttyACM0, or the pty `fbuild board-sim` printed).
    /// Default for a PlatformIO project: its env's `upload_port`.
    #[arg(long, short = 'p', value_name = "PORT")]
    pub port: Option<String>,
    /// Have the tool read the flash back and compare (the tool's `upload.params.verify`).
    #[arg(long)]
    pub verify: bool,
    /// Upload through this programmer (programmers.txt) with `program.pattern`.
    #[arg(long, short = 'P', value_name = "ID")]
    pub programmer: Option<String>,
    /// Print the exact command and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop an upload tool that has not finished after this long (wall time).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = crate::emulator::parse_duration)]
    pub upload_timeout: Duration,
    /// PlatformIO project only: the env to upload.
    #[arg(long = "environment", short = 'e', value_name = "ENV")]
    pub environment: Option<String>,
    /// The sketch folder, the path of its main .ino file, or a folder holding platformio.ini.
    pub sketch: PathBuf,
}

/// What a PlatformIO env says about uploading (`pio run -t upload` reads the same).
#[derive(Default)]
struct EnvUpload {
    port: Option<String>,
    overrides: Vec<(String, String)>,
}

fn env_upload(project: &Path, env: Option<&str>) -> Result<EnvUpload> {
    let config = crate::project::platformio::Config::load(&project.join("platformio.ini"))?;
    let envs: Vec<String> = env.map(String::from).into_iter().collect();
    let Some(e) = config.select_envs(&envs)?.into_iter().next() else { return Ok(EnvUpload::default()) };
    let mut u = EnvUpload { port: config.env(&e, "upload_port")?.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()), ..Default::default() };
    // atmelavr's builder passes upload_speed as -b and upload_protocol as -c.
    for (option, property) in [("upload_speed", "upload.speed"), ("upload_protocol", "upload.protocol")] {
        if let Some(v) = config.env(&e, option)?.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
            u.overrides.push((property.to_string(), v));
        }
    }
    Ok(u)
}

/// Build (cached), then upload. Returns the exit code; `Ok(Some(port))` tells deploy
/// where the board is.
pub fn upload(args: &UploadArgs) -> Result<(i32, Option<String>)> {
    crate::cli::one_board(&args.common)?;
    let project = crate::project::is_project(&args.sketch);
    let env = if project { env_upload(&args.sketch, args.environment.as_deref())? } else { EnvUpload::default() };
    let port = args.port.clone().or(env.port.clone()).ok_or_else(|| {
        Error::usage(format!("no port: pass --port PORT{}", if project { " or set upload_port in the env" } else { "" }))
    })?;
    let req = crate::targets::one_firmware(&args.common, &args.sketch, args.environment.as_deref())?;
    let session = crate::targets::one_firmware_session(&args.common)?;
    let mut overrides = req.build_properties.clone();
    overrides.extend(env.overrides);
    let board = resolve(&req.board, &session.opts.hardware, &overrides)?;
    let programmer = args.programmer.as_deref().map(|id| programmer(&board, id)).transpose()?;
    // Check the port before building: a typo should not cost a build.
    if !args.dry_run {
        port::check(&port)?;
    }
    let report = crate::targets::Targets::one(req).build(&session)?;
    let r = &report.sketches[0];
    let Some(hex) = r.firmware.get("hex").filter(|_| r.status == Status::Ok) else {
        crate::errln!("error: {}", r.first_error.as_deref().unwrap_or("build failed"));
        crate::errln!("log: {}", r.log.display());
        return Ok((exit::BUILD_FAILED, None));
    };
    if let (Some(used), Some(max)) = (r.flash_used, board.properties.get("upload.maximum_size").and_then(|m| m.trim().parse::<u64>().ok())) {
        if used > max {
            return Err(Error::usage(format!(
                "{}: the firmware is {used} bytes, larger than upload.maximum_size {max} of board {}; nothing was written",
                hex.display(),
                board.id
            )));
        }
    }
    let opts = recipe::Options { port: port.clone(), verbose: args.common.verbose, verify: args.verify, programmer };
    let (props, tool) = recipe::properties(&board.properties, &opts, hex)?;
    let action = recipe::action(&opts);
    let cmd = recipe::command(&props, &tool, action)?;
    if args.dry_run {
        crate::outln!("{}", crate::exec::display_command(&cmd));
        return Ok((exit::OK, Some(port)));
    }
    check_tool(&cmd[0], &tool, &props)?;
    let mut port = port;
    if opts.programmer.is_none() && props.get("upload.use_1200bps_touch").map(str::trim) == Some("true") {
        let before = port::list(&port);
        if before.contains(&port) {
            if args.common.verbose {
                crate::errln!("Performing 1200-bps touch reset on serial port {port}");
            }
            port::touch_1200(&port)?;
        }
        if props.get("upload.wait_for_upload_port").map(str::trim) == Some("true") {
            if args.common.verbose {
                crate::errln!("Waiting for upload port...");
            }
            match port::wait_for_new_port(&before, &port, Duration::from_secs(10)) {
                Some(p) => port = p,
                None if args.common.verbose => crate::errln!("No upload port found, using {port} as fallback"),
                None => {}
            }
        }
    }
    // The recipe again if the board came back on another port.
    let cmd = if port == opts.port {
        cmd
    } else {
        let opts = recipe::Options { port: port.clone(), ..opts };
        let (props, tool) = recipe::properties(&board.properties, &opts, hex)?;
        recipe::command(&props, &tool, action)?
    };
    if args.common.verbose {
        crate::errln!("{}", crate::exec::display_command(&cmd));
    }
    let code = run_tool(&cmd, &tool, args.upload_timeout, args.common.verbose)?;
    Ok((code, Some(port)))
}

/// A programmer's properties from the platform's programmers.txt.
fn programmer(board: &Board, id: &str) -> Result<crate::arduino::properties::Properties> {
    let file = board.platform.path.join("programmers.txt");
    let all = if file.is_file() { crate::arduino::properties::Properties::load(&file)? } else { crate::arduino::properties::Properties::new() };
    let p = all.subtree(id);
    if p.iter().next().is_none() {
        let mut ids: Vec<String> = all.first_level_keys();
        ids.sort();
        return Err(Error::usage(format!("programmer '{id}' is not in {}; it has: {}", file.display(), ids.join(", "))));
    }
    Ok(p)
}

/// The tool's program must be there: name it, the property it came from, and where.
fn check_tool(program: &str, tool: &str, props: &crate::arduino::properties::Properties) -> Result<()> {
    let p = Path::new(program);
    let found = if p.components().count() > 1 {
        p.is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
    };
    if found {
        return Ok(());
    }
    let key = ["cmd.path", "cmd", "path"].into_iter().find(|k| props.contains(&format!("tools.{tool}.{k}"))).unwrap_or("cmd.path");
    Err(Error::usage(format!(
        "upload tool {tool} not found: {program} (from tools.{tool}.{key} = {} in {}/platform.txt) does not exist; install it (Debian: apt-get install {tool}) or set --build-property tools.{tool}.{key}=PATH",
        props.get_or_empty(&format!("tools.{tool}.{key}")),
        props.get_or_empty("runtime.platform.path")
    )))
}

/// Run the upload tool in its own process group; stop it (and its children) at
/// the timeout or on Ctrl-C.
fn run_tool(cmd: &[String], tool: &str, timeout: Duration, verbose: bool) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| Error::Environment(format!("signal handler: {e}")))?;
    }
    let mut child = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::usage(format!("upload tool {tool}: cannot start {}: {e}", cmd[0])))?;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let readers: Vec<_> = [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>)]
        .into_iter()
        .flatten()
        .map(|stream| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    let line = String::from_utf8_lossy(&line).trim_end().to_string();
                    if verbose {
                        crate::errln!("{line}");
                    }
                    if !line.trim().is_empty() {
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        })
        .collect();
    let pid = child.id() as i32;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| Error::Environment(format!("waiting for {tool}: {e}")))? {
            break Some(s);
        }
        if stop.load(Ordering::SeqCst) || start.elapsed() >= timeout {
            stop_group(pid, &mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for r in readers {
        let _ = r.join();
    }
    let last = {
        let l = lines.lock().unwrap();
        l[l.len().saturating_sub(LAST_LINES)..].iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n")
    };
    let Some(status) = status else {
        if stop.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        crate::errln!("error: upload tool {tool} did not finish in {:.0} s: stopped it; its last lines:\n{last}", timeout.as_secs_f64());
        return Ok(exit::RUN_FAILED);
    };
    if status.success() {
        return Ok(exit::OK);
    }
    let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".to_string(),
    };
    crate::errln!("error: upload tool {tool} {how}; its last lines:\n{last}");
    Ok(exit::RUN_FAILED)
}

/// SIGTERM to the tool's group, SIGKILL if it lingers: no orphan keeps the port.
fn stop_group(pid: i32, child: &mut std::process::Child) {
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// `fbuild deploy`: upload, then (with --monitor or --expect) monitor the same port.
pub fn deploy(args: &UploadArgs, monitor: bool, options: &monitor::MonitorOptions) -> Result<i32> {
    let (code, port) = upload(args)?;
    let watch = monitor || !options.expect.is_empty();
    if code != exit::OK || args.dry_run || !watch {
        return Ok(code);
    }
    let Some(port) = port else { return Ok(code) };
    let baud = if options.baud.is_none() { monitor::baud_of(&args.sketch, args.environment.as_deref())? } else { None };
    monitor::monitor(&port, options, baud)
}
