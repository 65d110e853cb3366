//! A command's output on stdout, and progress on a terminal: used by the CLI and by
//! the operator commands that print as they go (`demo`).

/// `print!` for a command's output; see [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for a command's output; see [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes a command's output to stdout. A reader that went away
/// (`rangefleet reduce --json | head`) is not worth a panic: the rest is dropped and
/// the command's exit code stands.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: failed to write to stdout: {e}");
        }
        _ => {}
    }
}

/// Prints a command's JSON document, pretty, on stdout (see [`write_stdout`]).
pub fn print_json(doc: &serde_json::Value) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(doc).expect("JSON values serialise")
    );
}

/// A progress bar on a terminal (stderr), nothing elsewhere.
pub fn progress_bar(total: u64, unit: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
