//! README.md's "A short tour", run as written (issue 15, done-when 1).
//!
//! The rows come out of README.md itself, so this test follows the README, not a copy:
//! every backquoted span of the "run" column that is a command (`rangefleet …`, `cargo
//! run …`, after `NAME=value` settings) runs in order with `sh -c`, in a scratch
//! directory holding a copy of the repository's `examples/`, with the built binary's
//! folder first on PATH (the one substitution: `cargo run --release --` becomes
//! `rangefleet`). `<url>` is the URL the previous command (a server) printed. Each row
//! runs in its own mount namespace whose `/tmp` is a scratch folder kept across rows, so
//! the `/tmp/trips`, `/tmp/q.db` and `/tmp/out` the README names are fresh and shared by
//! the rows, and never this machine's. The row that needs AWS (`--fleet trips`) gets the
//! environment of a local moto server holding instances of the fleet, as the README
//! says. Every row has a check of its key output here; a README row this test does not
//! know fails it, as does a link in the "read" column to a file that is not there.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rangefleet_tests::moto::Moto;
use rangefleet_tests::{ec2, rangefleet_bin, TempDir};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One row of the tour table.
#[derive(Debug)]
struct Row {
    /// "you want to".
    want: String,
    /// The "run" cell's backquoted spans, in order.
    spans: Vec<String>,
    /// The "read" cell's link targets.
    links: Vec<String>,
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

/// The backquoted spans of `cell`, in order.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The targets of the markdown links of `cell`.
fn links(cell: &str) -> Vec<String> {
    cell.split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .map(str::to_string)
        .collect()
}

fn tour() -> Vec<Row> {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## A short tour"))
        .skip_while(|l| !l.starts_with("| you want to |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    table
        .iter()
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), 3, "a tour row without three cells: {l}");
            Row {
                want: c[0].clone(),
                spans: spans(&c[1]),
                links: links(&c[2]),
            }
        })
        .collect()
}

/// A span is a command when, after any `NAME=value` settings, it runs `rangefleet` or
/// `cargo run`.
fn is_command(span: &str) -> bool {
    let rest = span
        .split(' ')
        .skip_while(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
        })
        .collect::<Vec<_>>()
        .join(" ");
    rest.starts_with("rangefleet ") || rest.starts_with("cargo run ")
}

struct Tour {
    /// The scratch folder: `work/` (the rows' working directory) and `tmp/` (their /tmp).
    scratch: TempDir,
    path: String,
    /// The URL the last server printed, for `<url>`.
    url: Option<String>,
    servers: Vec<Child>,
}

impl Tour {
    fn new() -> Tour {
        let scratch = TempDir::new("tour");
        let work = scratch.0.join("work");
        std::fs::create_dir_all(work.join("examples")).unwrap();
        std::fs::create_dir_all(scratch.0.join("tmp")).unwrap();
        for f in ["agent.yaml", "user-data.yaml"] {
            std::fs::copy(
                Path::new(REPO).join("examples").join(f),
                work.join("examples").join(f),
            )
            .unwrap();
        }
        let bin = rangefleet_bin();
        assert_eq!(bin.file_name().unwrap(), "rangefleet");
        let bin_dir = bin.parent().unwrap().canonicalize().unwrap();
        assert!(
            !bin_dir.starts_with(std::env::temp_dir()),
            "the binary must not live under /tmp, which the rows replace: {}",
            bin_dir.display()
        );
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Tour {
            scratch,
            path,
            url: None,
            servers: Vec::new(),
        }
    }

    /// The machine's `/tmp` as the rows see it.
    fn tmp(&self) -> PathBuf {
        self.scratch.0.join("tmp")
    }

    /// `sh -c ROW` in the scratch folder, with the rows' /tmp, on a machine with no AWS
    /// settings (plus `env`).
    fn command(&self, row: &str, env: &[(String, String)]) -> Command {
        let row = row.replace("cargo run --release -- ", "rangefleet ");
        let row = match &self.url {
            Some(u) => row.replace("<url>", u),
            None => row,
        };
        assert!(!row.contains('<'), "a placeholder nothing fills: {row}");
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$TOUR_TMP" /tmp || exit 97; exec sh -c "$TOUR_ROW""#)
            .current_dir(self.scratch.0.join("work"))
            .env("TOUR_TMP", self.tmp())
            .env("TOUR_ROW", &row)
            .env("PATH", &self.path);
        for var in rangefleet_tests::DEVELOPER_AWS_ENV
            .into_iter()
            .chain(["RUST_LOG", "RANGEFLEET_BIN"])
        {
            c.env_remove(var);
        }
        // A laptop: no instance metadata service (a closed port answers at once), no
        // on-instance config file, nothing to power off.
        c.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
            .env(
                "RANGEFLEET_LOCAL_CONFIG",
                "/nonexistent/rangefleet/agent.yaml",
            )
            .env("RANGEFLEET_POWER_OFF_COMMAND", "/bin/false")
            .envs(env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn run(&mut self, row: &str, env: &[(String, String)]) -> Output {
        // A server runs until stopped: start it, read its URL line, go on.
        if row.starts_with("rangefleet imds-mock") {
            let mut child = self
                .command(row, env)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("run unshare (util-linux) for the tour's rows");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let url = line.trim().to_string();
            assert!(
                url.starts_with("http://127.0.0.1:"),
                "{row}: printed {url:?}"
            );
            self.url = Some(url);
            self.servers.push(child);
            return Output {
                status: std::process::ExitStatus::default(),
                stdout: line.into_bytes(),
                stderr: Vec::new(),
            };
        }
        let out = self
            .command(row, env)
            .output()
            .expect("run unshare (util-linux) for the tour's rows");
        assert_ne!(
            out.status.code(),
            Some(97),
            "cannot bind a private /tmp (unshare --mount needs root or user namespaces): {out:?}"
        );
        out
    }
}

impl Drop for Tour {
    fn drop(&mut self) {
        for c in &mut self.servers {
            // The whole group: unshare, sh and the server.
            // SAFETY: kill(2) with a negative pid signals a process group we started.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(row: &str, out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{row}` failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn repo_has(p: &str) -> bool {
    Path::new(REPO).join(p).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_tour_row_runs_as_written() {
    let rows = tour();
    let known = [
        "see it work",
        "check user-data before a launch",
        "try the agent's boot on a laptop",
        "make test data",
        "compute an answer in one process",
        "run a batch on one machine",
        "watch a fleet",
        "launch a fleet",
        "keep the agents' journals",
        "write an agent config",
        "read what the agent writes",
        "know how fast it is",
    ];
    let wants: Vec<&str> = rows.iter().map(|r| r.want.as_str()).collect();
    assert_eq!(
        wants, known,
        "the README's tour changed: give the new rows a check here"
    );

    // The row that needs AWS gets a local moto holding two instances of the fleet
    // `trips`, one terminated, and one of another fleet.
    let moto = Moto::start().unwrap();
    let sdk = moto.sdk_config().await;
    let trips = ec2::run_instances(&sdk, 3, &[("rangefleet:fleet", "trips")]).await;
    ec2::run_instances(&sdk, 1, &[("rangefleet:fleet", "other")]).await;
    aws_sdk_ec2::Client::new(&sdk)
        .terminate_instances()
        .instance_ids(&trips[0])
        .send()
        .await
        .unwrap();

    let total_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("TOTAL"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no TOTAL line: {s}"))
    };
    let mut scan_total = String::new();
    let mut tour = Tour::new();
    for row in &rows {
        for link in &row.links {
            let file = link.split('#').next().unwrap();
            assert!(repo_has(file), "{}: the link {link} is broken", row.want);
        }
        let commands: Vec<&String> = row.spans.iter().filter(|s| is_command(s)).collect();
        let needs_aws = row.want == "watch a fleet";
        let env = if needs_aws {
            moto.aws_env()
        } else {
            Vec::new()
        };
        let mut outs = Vec::new();
        for c in &commands {
            let out = tour.run(c, &env);
            outs.push(ok(c, &out));
        }
        let last = outs.last().cloned().unwrap_or_default();
        let tmp = tour.tmp();
        match row.want.as_str() {
            "see it work" => {
                assert_eq!(commands.len(), 1);
                assert!(last.contains("missing 0, unexpected 0"), "{last}");
                assert!(
                    last.contains("totals equal the generator's expected totals"),
                    "{last}"
                );
            }
            "check user-data before a launch" => {
                assert!(last.contains("s3://trips-data/trips/"), "{last}");
            }
            "try the agent's boot on a laptop" => {
                assert_eq!(commands.len(), 2);
                let v: serde_json::Value = serde_json::from_str(&last).unwrap();
                assert!(
                    v["identity"]["instance_id"]
                        .as_str()
                        .unwrap()
                        .starts_with("i-"),
                    "{v:#}"
                );
                assert_eq!(v["config"]["inputs"][0], "s3://trips-data/trips/", "{v:#}");
            }
            "make test data" => {
                let expected = tmp.join("trips/_expected.json");
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
                assert!(v.is_object(), "{v}");
            }
            "compute an answer in one process" => {
                scan_total = total_line(&last);
                let trips: u64 = scan_total.split(' ').nth(1).unwrap().parse().unwrap();
                assert!(trips > 0, "{scan_total}");
            }
            "run a batch on one machine" => {
                assert_eq!(commands.len(), 3);
                assert!(last.contains("missing 0, unexpected 0"), "{last}");
                // The batch's answer is scan's.
                assert_eq!(total_line(&last), scan_total);
            }
            "watch a fleet" => {
                assert!(
                    last.contains("fleet (rangefleet:fleet=trips): 2 instances"),
                    "{last}"
                );
                assert!(!last.contains(&trips[0]), "a terminated instance: {last}");
                assert!(
                    last.contains("visible 0, in flight 0, dead letters 0"),
                    "{last}"
                );
                assert!(last.contains("jobs done (100.0%)"), "{last}");
            }
            "launch a fleet" => {
                assert_eq!(row.spans, ["terraform/"]);
                assert!(repo_has("terraform/main.tf"));
            }
            "keep the agents' journals" => {
                assert_eq!(row.spans, ["journal_log_group", "terraform/"]);
                let vars = std::fs::read_to_string(Path::new(REPO).join("terraform/variables.tf"))
                    .unwrap();
                assert!(vars.contains("variable \"journal_log_group\""));
            }
            "write an agent config" => {
                // The samples the rows above ran with.
                assert_eq!(
                    row.spans,
                    ["examples/agent.yaml", "examples/user-data.yaml"]
                );
                assert!(row.spans.iter().all(|s| repo_has(s)));
            }
            "read what the agent writes" => {
                // What the batch row wrote.
                let out = tmp.join("out");
                assert!(out.join("_plan.json").is_file());
                let summaries = std::fs::read_dir(out.join("_instances")).unwrap().count();
                assert_eq!(summaries, 1, "one agent, one summary");
                let results = walk(&out)
                    .iter()
                    .filter(|p| rangefleet::contract::job::job_id_of_result(p).is_some())
                    .count();
                assert!(results > 0, "no result documents under {}", out.display());
            }
            "know how fast it is" => {
                assert_eq!(row.spans, ["bench/"]);
                assert!(repo_has("bench/"));
            }
            other => unreachable!("{other}"),
        }
    }
}

/// Every file under `dir`, as keys relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}
