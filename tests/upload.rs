//! Upload, monitor and deploy on a virtual board: `fbuild board-sim` runs the real
//! bootloader in simavr behind a pty, and Debian's real avrdude uploads to it through
//! the platform's upload recipe. Fake tools appear only for fault injection (a tool
//! that fails, one that hangs), and say so.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The ATmega328P board whose shipped bootloader fits its boot section (Debian's
/// optiboot_atmega328.hex for the Uno does not: see `uno_bootloader_is_refused`).
const NANO_OLD: &str = "arduino:avr:nano:cpu=atmega328old";

/// A running `fbuild board-sim`, stopped on drop.
struct BoardSim {
    child: Child,
    port: String,
    log: Arc<Mutex<String>>,
}

impl BoardSim {
    fn start(board: &str, extra: &[&str]) -> BoardSim {
        let mut child = Command::new(fbuild_bin())
            .args(["board-sim", "--board", board])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start board-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let log: Arc<Mutex<String>> = Arc::default();
        let sink = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let port = line.trim().to_string();
        assert!(port.starts_with("/dev/pts/"), "board-sim printed {line:?}; its log: {}", log.lock().unwrap());
        BoardSim { child, port, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for BoardSim {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn run(t: &Path, args: &[&str]) -> Run {
    fbuild(&t.join("cache"), t, args)
}

fn out(t: &Path) -> String {
    t.join("out").display().to_string()
}

fn ex(rel: &str) -> String {
    example(rel).display().to_string()
}

fn upload(t: &Path, board: &str, port: &str, sketch: &str, extra: &[&str]) -> Run {
    let o = out(t);
    let mut args = vec!["upload", "--board", board, "--port", port, "--out", &o];
    args.extend_from_slice(extra);
    args.push(sketch);
    run(t, &args)
}

fn monitor(t: &Path, port: &str, expects: &[&str], timeout: &str) -> Run {
    let mut args = vec!["monitor", "--port", port, "--timeout", timeout];
    for e in expects {
        args.extend(["--expect", e]);
    }
    run(t, &args)
}

#[test]
fn upload_blink_then_asciitable_monitor_it_then_a_second_sketch_over_it() {
    let t = tmp();
    let sim = BoardSim::start(NANO_OLD, &[]);
    let r = upload(t.path(), NANO_OLD, &sim.port, &ex("01.Basics/Blink"), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    assert!(sim.log().contains("port opened (DTR): reset into the bootloader"), "{}", sim.log());

    let r = upload(t.path(), NANO_OLD, &sim.port, &ex("04.Communication/ASCIITable"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = monitor(t.path(), &sim.port, &["ASCII Table ~ Character Map", r"!, dec: 33, hex: 21, oct: 41, bin: 100001", r"~, dec: 126, hex: 7E"], "40s");
    assert_eq!(m.code, 0, "monitor: {}\nboard: {}", m.stderr, sim.log());
    assert!(m.stdout.contains("A, dec: 65, hex: 41, oct: 101, bin: 1000001"), "{}", m.stdout);

    // A second sketch over the first: its output, not the table's.
    let r = upload(t.path(), NANO_OLD, &sim.port, &ex("01.Basics/DigitalReadSerial"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = monitor(t.path(), &sim.port, &[r"(0\r\n){20}"], "20s");
    assert_eq!(m.code, 0, "monitor: {}", m.stderr);
    assert!(!m.stdout.contains("ASCII"), "the old sketch still runs: {}", m.stdout);
}

#[test]
fn deploy_builds_uploads_and_monitors_in_one_command() {
    let t = tmp();
    let sim = BoardSim::start(NANO_OLD, &[]);
    let o = out(t.path());
    let sketch = ex("04.Communication/ASCIITable");
    let r = run(t.path(), &["deploy", "--board", NANO_OLD, "--port", &sim.port, "--out", &o, "--monitor", "--expect", "dec: 126", "--timeout", "40s", &sketch]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    assert!(r.stdout.contains("~, dec: 126"), "{}", r.stdout);
    // The monitor's --expect fails at its timeout when the text never comes.
    let m = monitor(t.path(), &sim.port, &["never printed"], "3s");
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(m.stderr.contains("/never printed/"), "{}", m.stderr);
}

#[test]
fn verify_passes_and_fails_once_the_flash_is_corrupted() {
    let t = tmp();
    let sim = BoardSim::start(NANO_OLD, &[]);
    let blink = ex("01.Basics/Blink");
    let r = upload(t.path(), NANO_OLD, &sim.port, &blink, &["--verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    // Test seam: SIGUSR1 makes flash byte 0 stuck at 0xff.
    sim.signal(libc::SIGUSR1);
    let t0 = Instant::now();
    while !sim.log().contains("stuck at 0xff") && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = upload(t.path(), NANO_OLD, &sim.port, &blink, &["--verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("upload tool avrdude exited with status 1") && r.stderr.contains("mismatch"), "{}", r.stderr);
    // Without --verify avrdude reads nothing back (-V): the same flash passes.
    let r = upload(t.path(), NANO_OLD, &sim.port, &blink, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn the_1200_bps_touch_resets_a_board_that_asks_for_it() {
    let t = tmp();
    let touch = "upload.use_1200bps_touch=true";
    let sim = BoardSim::start(NANO_OLD, &["--build-property", touch]);
    let r = upload(t.path(), NANO_OLD, &sim.port, &ex("01.Basics/Blink"), &["-v", "--build-property", touch, "--build-property", "upload.wait_for_upload_port=true"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    assert!(sim.log().contains("1200-bps touch: reset into the bootloader"), "{}", sim.log());
    assert!(r.stderr.contains(&format!("Performing 1200-bps touch reset on serial port {}", sim.port)), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("No upload port found, using {} as fallback", sim.port)), "{}", r.stderr);

    // A board that does not ask for it is not touched.
    let plain = BoardSim::start(NANO_OLD, &[]);
    let r = upload(t.path(), NANO_OLD, &plain.port, &ex("01.Basics/Blink"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!plain.log().contains("1200-bps"), "{}", plain.log());
}

#[test]
fn mega_uploads_through_its_stk500v2_bootloader() {
    let t = tmp();
    let sim = BoardSim::start("mega", &[]);
    let r = upload(t.path(), "mega", &sim.port, &ex("04.Communication/ASCIITable"), &["--verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    let m = monitor(t.path(), &sim.port, &[r"!, dec: 33, hex: 21"], "30s");
    assert_eq!(m.code, 0, "{}\n{}", m.stderr, sim.log());
}

#[test]
fn uno_bootloader_is_refused_because_debians_image_overruns_the_flash() {
    let r = Command::new(fbuild_bin()).args(["board-sim", "--board", "uno"]).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("optiboot_atmega328.hex spans 0x07e00..0x08014") && e.contains("--bootloader"), "{e}");
}

/// The hex a build puts in `out` (to write the expected commands with).
fn built_hex(t: &Path, board: &str, sketch: &str, extra: &[&str]) -> PathBuf {
    let o = out(t);
    let mut args = vec!["build", "--board", board, "--out", &o];
    args.extend_from_slice(extra);
    args.push(sketch);
    let r = run(t, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.lines().find_map(|l| l.strip_prefix("Firmware: ")).expect("Firmware line");
    PathBuf::from(line.trim())
}

#[test]
fn dry_run_prints_what_arduino_cli_would_run() {
    let t = tmp();
    let blink = ex("01.Basics/Blink");
    // Written by hand from Debian's avr platform.txt (tools.avrdude.upload.pattern, not
    // verbose: params.quiet; no --verify: params.noverify) and boards.txt.
    for (board, mcu, protocol, speed) in [("uno", "atmega328p", "arduino", "115200"), ("mega", "atmega2560", "wiring", "115200"), ("leonardo", "atmega32u4", "avr109", "57600"), (NANO_OLD, "atmega328p", "arduino", "57600")] {
        let hex = built_hex(t.path(), board, &blink, &[]);
        let r = upload(t.path(), board, "/dev/ttyACM0", &blink, &["--dry-run"]);
        assert_eq!(r.code, 0, "{board}: {}", r.stderr);
        let want = format!("/usr/bin/avrdude -C/etc/avrdude.conf -q -q -V -p{mcu} -c{protocol} -P/dev/ttyACM0 -b{speed} -D -Uflash:w:{}:i", hex.display());
        assert_eq!(r.stdout.trim(), want, "{board}");
        let r = upload(t.path(), board, "/dev/ttyACM0", &blink, &["--dry-run", "--verify", "-v"]);
        let want = format!("/usr/bin/avrdude -C/etc/avrdude.conf -v -p{mcu} -c{protocol} -P/dev/ttyACM0 -b{speed} -D -Uflash:w:{}:i", hex.display());
        assert_eq!(r.stdout.lines().last().unwrap_or(""), want, "{board} --verify -v");
    }
    // A programmer: programmers.txt's avrisp with tools.avrdude.program.pattern.
    let hex = built_hex(t.path(), "uno", &blink, &[]);
    let r = upload(t.path(), "uno", "/dev/ttyUSB0", &blink, &["--dry-run", "--programmer", "avrisp"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), format!("/usr/bin/avrdude -C/etc/avrdude.conf -q -q -V -patmega328p -cstk500v1 -P/dev/ttyUSB0 -Uflash:w:{}:i", hex.display()));

    // The SAMD kit's boards (tests/samd.rs gives its flags): bossac and openocd.
    let mut kit: Vec<String> = vec!["--hardware".into(), samd_kit().join("hardware").display().to_string()];
    for p in samd_tool_properties() {
        kit.extend(["--build-property".into(), p]);
    }
    kit.extend(["--build-property".into(), "runtime.tools.bossac-1.7.0-arduino3.path=/opt/bossac".into()]);
    kit.extend(["--build-property".into(), "runtime.tools.openocd-0.10.0-arduino7.path=/opt/openocd".into()]);
    let kit: Vec<&str> = kit.iter().map(String::as_str).collect();
    let platform = samd_kit().join("hardware/arduino/samd");
    for (board, want) in [
        ("arduino:samd:arduino_zero_native", "/opt/bossac/bossac --port=ttyACM0 -U true -i -e -w -v BUILD/Blink.ino.bin -R"),
        ("arduino:samd:mkrzero", "/opt/bossac/bossac --port=ttyACM0 -U true -i -e -w -v BUILD/Blink.ino.bin -R"),
        (
            "arduino:samd:arduino_zero_edbg",
            "/opt/openocd/bin/openocd -d0 -s /opt/openocd/share/openocd/scripts/ -f PLATFORM/variants/arduino_zero/openocd_scripts/arduino_zero.cfg -c \"telnet_port disabled; program {BUILD/Blink.ino.bin} verify reset 0x2000; shutdown\"",
        ),
    ] {
        let hex = built_hex(t.path(), board, &blink, &kit);
        let build = hex.parent().unwrap().display().to_string();
        let mut args = kit.clone();
        args.push("--dry-run");
        let r = upload(t.path(), board, "/dev/ttyACM0", &blink, &args);
        assert_eq!(r.code, 0, "{board}: {}", r.stderr);
        let want = want.replace("BUILD", &build).replace("PLATFORM", &platform.display().to_string());
        assert_eq!(r.stdout.trim(), want, "{board}");
    }
}

/// A pty made by the test: a port that exists, with no board behind it.
fn test_pty() -> (i32, String) {
    let (mut m, mut s) = (-1, -1);
    let mut name = [0 as libc::c_char; 128];
    assert_eq!(unsafe { libc::openpty(&mut m, &mut s, name.as_mut_ptr(), std::ptr::null(), std::ptr::null()) }, 0);
    unsafe { libc::close(s) };
    (m, unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned())
}

/// Fault injection: a stand-in for avrdude, as a script (the only fake tool here).
fn fake_tool(dir: &Path, body: &str) -> String {
    let p = dir.join("fake-avrdude");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    format!("tools.avrdude.cmd.path={}", p.display())
}

/// Live processes whose command line holds `marker` (read from /proc, as pgrep -f does).
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).replace('\0', " ").contains(marker))
        .count()
}

#[test]
fn bad_ports_tools_and_sizes_fail_clearly() {
    let t = tmp();
    let blink = ex("01.Basics/Blink");
    // No such port.
    let r = upload(t.path(), "uno", "/dev/ttyNOPE9", &blink, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("port /dev/ttyNOPE9 does not exist"), "{}", r.stderr);
    let m = monitor(t.path(), "/dev/ttyNOPE9", &[], "1s");
    assert_eq!(m.code, 2, "{}", m.stderr);
    assert!(m.stderr.contains("/dev/ttyNOPE9"), "{}", m.stderr);

    // A busy port: a monitor holds it.
    let (master, port) = test_pty();
    let mut holder = Command::new(fbuild_bin()).args(["monitor", "--port", &port, "--timeout", "60s"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(holder.stderr.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("monitor:"), "{first}");
    let r = upload(t.path(), "uno", &port, &blink, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("port {port} is busy")), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // Ctrl-C ends the monitor with 130 and lets the port go.
    unsafe { libc::kill(holder.id() as i32, libc::SIGINT) };
    assert_eq!(holder.wait().unwrap().code(), Some(130));
    let m = monitor(t.path(), &port, &[], "1s");
    assert_eq!(m.code, 0, "{}", m.stderr);

    // A missing upload tool: its name, the property and where it was looked for.
    let r = upload(t.path(), "uno", &port, &blink, &["--build-property", "tools.avrdude.cmd.path=/nonexistent/bin/avrdude"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("upload tool avrdude not found: /nonexistent/bin/avrdude (from tools.avrdude.cmd.path"), "{}", r.stderr);
    assert!(r.stderr.contains("platform.txt"), "{}", r.stderr);
    // An unset runtime.tools property (SAMD's bossac): named, with where fbuild looked.
    let r = upload(t.path(), "leonardo", &port, &blink, &["--dry-run", "--build-property", "tools.avrdude.path={runtime.tools.avrdude.path}"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("{runtime.tools.avrdude.path}") && r.stderr.contains("looked for the tool in"), "{}", r.stderr);

    // Firmware larger than upload.maximum_size: refused before the tool runs.
    let marker = t.path().join("tool-ran");
    let tool = fake_tool(t.path(), &format!("touch {}", marker.display()));
    let r = upload(t.path(), "uno", &port, &blink, &["--build-property", "upload.maximum_size=100", "--build-property", &tool]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("100 bytes"), "{}", r.stderr);
    assert!(!marker.exists(), "the upload tool ran");

    // A tool that fails: its status and last lines.
    let tool = fake_tool(t.path(), "echo 'avrdude: stk500_recv(): programmer is not responding' >&2\nexit 3");
    let r = upload(t.path(), "uno", &port, &blink, &["--build-property", &tool]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("exited with status 3") && r.stderr.contains("programmer is not responding"), "{}", r.stderr);

    // A tool that hangs: stopped at the timeout with its child, no orphan left.
    let tool = fake_tool(t.path(), "echo waiting\nsleep 417.25 &\nwait");
    let r = upload(t.path(), "uno", &port, &blink, &["--build-property", &tool, "--upload-timeout", "2s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("did not finish in 2 s") && r.stderr.contains("waiting"), "{}", r.stderr);
    assert_eq!(processes_with("sleep 417.25"), 0, "an orphan of the hung tool is left");

    // Ctrl-C during an upload: 130, and the tool's whole group gone.
    let tool = fake_tool(t.path(), "sleep 418.25 &\nwait");
    let o = out(t.path());
    let mut up = Command::new(fbuild_bin())
        .args(["upload", "--board", "uno", "--port", &port, "--out", &o, "--build-property", &tool, &blink])
        .env("FBUILD_CACHE_DIR", t.path().join("cache"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while processes_with("sleep 418.25") == 0 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_with("sleep 418.25") > 0, "the stand-in tool never started");
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    assert_eq!(up.wait().unwrap().code(), Some(130));
    assert_eq!(processes_with("sleep 418.25"), 0, "an orphan of the interrupted tool is left");
    unsafe { libc::close(master) };
}

#[test]
fn board_sim_stops_cleanly_on_ctrl_c() {
    let sim = BoardSim::start(NANO_OLD, &[]);
    sim.signal(libc::SIGINT);
    let mut sim = sim;
    let status = sim.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let t0 = Instant::now();
    while !sim.log().contains("board-sim: stopped") && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sim.log().contains("board-sim: stopped"), "{}", sim.log());
    assert!(!Path::new(&sim.port).exists() || std::fs::File::open(&sim.port).is_err(), "the pty outlived the board");
}

/// A PlatformIO project (no PlatformIO needed to build it) holding ASCIITable.
fn asciitable_project(dir: &Path, env: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let ino = std::fs::read_to_string(example("04.Communication/ASCIITable/ASCIITable.ino")).unwrap();
    std::fs::write(dir.join("src/main.cpp"), format!("#include <Arduino.h>\n{ino}")).unwrap();
    std::fs::write(dir.join("platformio.ini"), format!("[env:nano]\nplatform = atmelavr\nframework = arduino\n{env}")).unwrap();
}

#[test]
fn a_platformio_project_deploys_with_its_envs_upload_port_speed_and_monitor_speed() {
    let t = tmp();
    let sim = BoardSim::start(NANO_OLD, &[]);
    let project = t.path().join("proj");
    // PlatformIO's nanoatmega328 is the Nano with the old bootloader (57600 baud).
    asciitable_project(&project, &format!("board = nanoatmega328\nupload_port = {}\nupload_speed = 57600\nupload_protocol = arduino\nmonitor_speed = 9600\n", sim.port));
    let o = out(t.path());
    let p = project.display().to_string();
    let r = run(t.path(), &["upload", "--dry-run", "--out", &o, &p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("/usr/bin/avrdude -C/etc/avrdude.conf -q -q -V -patmega328p -carduino"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!(" -P{} -b57600 -D ", sim.port)), "{}", r.stdout);
    let r = run(t.path(), &["deploy", "--out", &o, "--monitor", "--expect", r"~, dec: 126", "--timeout", "40s", &p]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sim.log());
    assert!(r.stderr.contains(&format!("monitor: {} at 9600 baud", sim.port)), "{}", r.stderr);
}

#[test]
fn monitor_baud_comes_from_the_env_or_the_sketch() {
    let t = tmp();
    let (master, port) = test_pty();
    let project = t.path().join("proj");
    asciitable_project(&project, "board = uno\nmonitor_speed = 115200\n");
    let r = run(t.path(), &["monitor", "--port", &port, "--timeout", "1s", &project.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("monitor: {port} at 115200 baud")), "{}", r.stderr);
    let sketch = t.path().join("Fast");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(sketch.join("Fast.ino"), "void setup() { Serial.begin(57600); }\nvoid loop() {}\n").unwrap();
    let r = run(t.path(), &["monitor", "--port", &port, "--timeout", "1s", &sketch.display().to_string()]);
    assert!(r.stderr.contains(&format!("monitor: {port} at 57600 baud")), "{}", r.stderr);
    let r = run(t.path(), &["monitor", "--port", &port, "--timeout", "1s", "--baud", "19200", &sketch.display().to_string()]);
    assert!(r.stderr.contains(&format!("monitor: {port} at 19200 baud")), "{}", r.stderr);
    unsafe { libc::close(master) };
}
