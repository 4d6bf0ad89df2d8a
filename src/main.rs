//! Thin entry point: parse flags, run, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = match fbuild::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                std::process::exit(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
            }
            // One line: clap's message (which may span lines before its usage
            // block), then how to get help.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let message = if message.is_empty() { "error: bad arguments".to_string() } else { message.join(" ") };
            fbuild::errln!("{message} (see `fbuild --help`)");
            std::process::exit(fbuild::error::exit::USAGE);
        }
    };
    let result = fbuild::cli::run(cli);
    // Compiles a launcher ran here instead of distributing: said once, not hidden.
    if let Some(line) = fbuild::exec::launcher::declined_summary() {
        fbuild::errln!("note: {line}");
    }
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            fbuild::errln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
