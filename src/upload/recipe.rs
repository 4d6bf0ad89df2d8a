//! The upload command as arduino-cli makes it from the platform files: the tool
//! chosen by `upload.tool.serial` / `upload.tool.default` / `upload.tool` (or the
//! programmer's `program.tool*`), its `tools.<tool>.*` properties laid over the
//! board's, `{upload.verbose}` / `{upload.verify}` from the tool's `params.*`, and
//! the port, build folder and project name of this upload.

use std::path::Path;

use crate::error::{Error, Result};
use crate::arduino::properties::{split_command_line, Properties};

/// What the user asked for, beyond the board.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub port: String,
    pub verbose: bool,
    pub verify: bool,
    /// `--programmer`: its properties (programmers.txt, the id's subtree).
    pub programmer: Option<Properties>,
}

/// `upload` for a board's own bootloader, `program` through a programmer.
pub fn action(opts: &Options) -> &'static str {
    if opts.programmer.is_some() {
        "program"
    } else {
        "upload"
    }
}

/// The tool id for `action` on a serial port, as arduino-cli picks it.
pub fn tool_id(props: &Properties, action: &str) -> Result<String> {
    for key in [format!("{action}.tool.serial"), format!("{action}.tool.default"), format!("{action}.tool")] {
        if let Some(t) = props.get(&key).map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(t.to_string());
        }
    }
    Err(Error::usage(format!(
        "the board sets no {action}.tool (nor {action}.tool.default) in boards.txt: fbuild cannot tell which tool uploads to it"
    )))
}

/// Every property the recipe expands with.
pub fn properties(board: &Properties, opts: &Options, hex: &Path) -> Result<(Properties, String)> {
    let action = action(opts);
    let mut props = board.clone();
    if let Some(p) = &opts.programmer {
        props.merge(p);
    }
    let tool = tool_id(&props, action)?;
    let tool_props = props.subtree(&format!("tools.{tool}"));
    props.merge(&tool_props);
    if let Some(p) = &opts.programmer {
        props.merge(p);
    }
    for a in ["upload", "program", "erase", "bootloader"] {
        let which = if opts.verbose { "verbose" } else { "quiet" };
        if let Some(v) = props.get(&format!("{a}.params.{which}")).map(str::to_string) {
            props.set(format!("{a}.verbose"), v);
        }
        let which = if opts.verify { "verify" } else { "noverify" };
        let v = props.get_or_empty(&format!("{a}.params.{which}")).to_string();
        props.set(format!("{a}.verify"), v);
    }
    let build_path = hex.parent().unwrap_or(Path::new("."));
    let project_name = hex.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".hex")).unwrap_or("firmware");
    props.set("build.path", build_path.display().to_string());
    props.set("build.project_name", project_name);
    props.set("serial.port", opts.port.clone());
    props.set("serial.port.file", opts.port.strip_prefix("/dev/").unwrap_or(&opts.port));
    props.set("upload.port.address", opts.port.clone());
    props.set("upload.port.protocol", "serial");
    Ok((props, tool))
}

/// The command line of `{action}.pattern`, expanded and split as arduino-cli does.
/// A property left unexpanded (a `runtime.tools.*` nothing set) is an error naming it.
pub fn command(props: &Properties, tool: &str, action: &str) -> Result<Vec<String>> {
    let key = format!("{action}.pattern");
    let pattern = props.get(&key).filter(|p| !p.trim().is_empty()).ok_or_else(|| {
        Error::usage(format!(
            "upload tool {tool}: the platform has no tools.{tool}.{key} (platform.txt {})",
            props.get_or_empty("runtime.platform.path")
        ))
    })?;
    let line = props.expand(pattern);
    if let Some(missing) = unexpanded(&line) {
        let looked = crate::arduino::runtime_tools::packages_dir().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.arduino15/packages".into());
        return Err(Error::usage(format!(
            "upload tool {tool}: {{{missing}}} in tools.{tool}.{key} is not set; fbuild looked for the tool in {looked} (pass --build-property {missing}=DIR)"
        )));
    }
    Ok(split_command_line(&line))
}

/// The first `{name}` still in an expanded line (a property key, not the braces
/// a tool's own syntax keeps, as openocd's `program {FILE}`).
fn unexpanded(line: &str) -> Option<String> {
    let re = regex::Regex::new(r"\{([A-Za-z][A-Za-z0-9_.-]*)\}").expect("valid");
    re.captures(line).map(|c| c[1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Properties {
        Properties::parse(
            "tools.avrdude.path=/usr\ntools.avrdude.cmd.path={path}/bin/avrdude\ntools.avrdude.config.path=/etc/avrdude.conf\n\
             tools.avrdude.upload.params.verbose=-v\ntools.avrdude.upload.params.quiet=-q -q\ntools.avrdude.upload.params.noverify=-V\n\
             tools.avrdude.upload.pattern=\"{cmd.path}\" \"-C{config.path}\" {upload.verbose} {upload.verify} -p{build.mcu} -c{upload.protocol} \"-P{serial.port}\" -b{upload.speed} -D \"-Uflash:w:{build.path}/{build.project_name}.hex:i\"\n\
             upload.tool=avrdude\nupload.tool.default=avrdude\nupload.protocol=arduino\nupload.speed=115200\nbuild.mcu=atmega328p\n",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn verify_and_verbose_pick_the_tool_params() {
        let hex = Path::new("/o/Blink/Blink.ino.hex");
        let opts = Options { port: "/dev/ttyACM0".into(), ..Default::default() };
        let (p, tool) = properties(&board(), &opts, hex).unwrap();
        assert_eq!(
            command(&p, &tool, "upload").unwrap().join(" "),
            "/usr/bin/avrdude -C/etc/avrdude.conf -q -q -V -patmega328p -carduino -P/dev/ttyACM0 -b115200 -D -Uflash:w:/o/Blink/Blink.ino.hex:i"
        );
        let opts = Options { verbose: true, verify: true, ..opts };
        let (p, tool) = properties(&board(), &opts, hex).unwrap();
        let cmd = command(&p, &tool, "upload").unwrap();
        assert_eq!(cmd[2], "-v");
        assert!(!cmd.contains(&"-V".to_string()));
    }

    #[test]
    fn an_unset_runtime_tool_is_named() {
        let mut b = board();
        b.set("tools.avrdude.path", "{runtime.tools.avrdude.path}");
        let opts = Options { port: "/dev/ttyACM0".into(), ..Default::default() };
        let (p, tool) = properties(&b, &opts, Path::new("/o/x.hex")).unwrap();
        let e = command(&p, &tool, "upload").unwrap_err().to_string();
        assert!(e.contains("runtime.tools.avrdude.path") && e.contains("avrdude"), "{e}");
    }
}
