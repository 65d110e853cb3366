//! `rangefleet completions SHELL` and `rangefleet man`: shell completion scripts and man
//! pages generated from the clap definitions of [`super::Cli`] (clap_complete,
//! clap_mangen), so they can never disagree with `--help` (docs/cli.md).

use std::path::PathBuf;

use clap::CommandFactory;

use crate::exit;

/// `rangefleet completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `rangefleet man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write rangefleet.1 and one page per subcommand (rangefleet-agent.1, …) into
    /// this folder (created if missing) instead of rangefleet.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The command line as clap sees it, named as installed.
fn command() -> clap::Command {
    super::Cli::command().name("rangefleet")
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs) -> i32 {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "rangefleet", &mut out);
    write_stdout(&out)
}

/// Writes rangefleet.1 to stdout, or every page into `--dir`.
pub fn man(args: ManArgs) -> i32 {
    match args.dir {
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(command()).render(&mut out) {
                eprintln!("error: failed to render the man page: {e}");
                return exit::FAILURE;
            }
            write_stdout(&out)
        }
        Some(dir) => {
            let made = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command(), &dir));
            match made {
                Ok(()) => {
                    crate::outln!("wrote the man pages to {}", dir.display());
                    exit::OK
                }
                Err(e) => {
                    eprintln!(
                        "error: failed to write the man pages to {}: {e}",
                        dir.display()
                    );
                    exit::FAILURE
                }
            }
        }
    }
}

fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit::OK,
        // A closed pipe (`rangefleet man | head`) is not worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: failed to write to stdout: {e}");
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_is_in_the_bash_script_and_the_man_page() {
        let mut cmd = command();
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut cmd,
            "rangefleet",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        let mut man = Vec::new();
        clap_mangen::Man::new(command()).render(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        let names: Vec<String> = command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert!(names.len() >= 12, "{names:?}");
        for name in &names {
            assert!(
                bash.contains(name.as_str()),
                "{name} not in the bash script"
            );
            // roff writes a hyphen as \-.
            let roff = format!("rangefleet\\-{}", name.replace('-', "\\-"));
            assert!(man.contains(&roff), "{roff} not in the man page");
        }
    }
}
