//! `rangefleet status`: the queue's counts, the fleet's instances, the plan's progress,
//! the instances whose agent gave up (and why).

use serde_json::{json, Value};

use crate::exit;
use crate::operator::status::{FailedInstance, InstanceRow, Progress, FLEET_TAG};
use crate::queue::QueueStats;

/// `rangefleet status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue: sqlite:///path/queue.db or an SQS queue URL.
    #[arg(long)]
    pub queue: String,
    /// The results prefix the plan wrote `_plan.json` to (a URL, or a local folder):
    /// show the plan's progress and the instances whose agent gave up, with the reason
    /// from their summaries.
    #[arg(long, value_parser = super::location)]
    pub results: Option<String>,
    /// List the instances of the fleet NAME: those the Terraform module tagged
    /// `rangefleet:fleet=NAME` (terminated and shutting-down ones left out).
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// List the instances carrying this tag, K=V (repeatable: all must match; with
    /// --fleet, as well as its tag).
    #[arg(long = "fleet-tag", value_parser = parse_tag)]
    pub fleet_tags: Vec<(String, String)>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The tags an instance must carry: `--fleet`'s, then each `--fleet-tag`.
    pub fn tags(&self) -> Vec<(String, String)> {
        let fleet = self
            .fleet
            .iter()
            .map(|n| (FLEET_TAG.to_string(), n.clone()));
        fleet.chain(self.fleet_tags.iter().cloned()).collect()
    }
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected K=V, got {s:?}"))?;
    if k.is_empty() {
        return Err(format!("empty tag key in {s:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Runs `status`; returns the exit code.
pub async fn run(args: Args) -> i32 {
    // Read-only: a SQLite file that does not exist is refused, never created.
    let queue = match super::open_queue(&args.queue, crate::queue::Access::Read).await {
        Ok(q) => q,
        Err(code) => return code,
    };
    let stats = match queue.stats().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: failed to read the counts of queue {}: {e}",
                args.queue
            );
            return exit::FAILURE;
        }
    };
    let tags = args.tags();
    let instances = if tags.is_empty() {
        None
    } else {
        match crate::operator::status::fleet_instances(&tags).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                eprintln!("error: {e}");
                return e.exit_code();
            }
        }
    };
    let (progress, failed) = match &args.results {
        None => (None, None),
        Some(url) => {
            let Some(store) = super::open_store(url, "results").await else {
                return exit::USAGE;
            };
            let failed = match crate::operator::status::failed_instances(&store).await {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: failed to read the instance summaries under {url}: {e}");
                    return exit::FAILURE;
                }
            };
            match crate::operator::status::progress(&store).await {
                Ok(p) => (Some(p), Some(failed)),
                Err(e) => {
                    // The failures are worth showing even before a plan exists.
                    if !failed.is_empty() {
                        crate::out!("{}", failed_text(&failed));
                    }
                    eprintln!("error: {e}");
                    return e.exit_code();
                }
            }
        }
    };
    if args.json {
        let mut doc = to_json(&args, &stats, instances.as_deref(), progress.as_ref());
        if let Some(f) = &failed {
            doc["failed_instances"] = serde_json::to_value(f).expect("rows serialise");
        }
        crate::output::print_json(&doc);
    } else {
        crate::out!("{}", text(&args, &stats, instances.as_deref()));
        if let Some(p) = &progress {
            show_progress(p);
        }
        if let Some(f) = &failed {
            crate::out!("{}", failed_text(f));
        }
    }
    exit::OK
}

/// The `--json` document: `queue` always, `fleet_tags` and `instances` with `--fleet`
/// or `--fleet-tag`, `plan` with `--results`.
pub fn to_json(
    args: &Args,
    stats: &QueueStats,
    instances: Option<&[InstanceRow]>,
    progress: Option<&Progress>,
) -> Value {
    let mut doc = json!({
        "queue": {
            "url": args.queue,
            "visible": stats.visible,
            "in_flight": stats.in_flight,
            "dead": stats.dead,
        }
    });
    if let Some(rows) = instances {
        doc["fleet_tags"] = args
            .tags()
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        doc["instances"] = serde_json::to_value(rows).expect("rows serialise");
    }
    if let (Some(p), Some(url)) = (progress, &args.results) {
        doc["plan"] = json!({
            "results": url,
            "planned": p.planned,
            "done": p.done,
            "remaining": p.planned.saturating_sub(p.done),
            "unexpected": p.unexpected,
        });
    }
    doc
}

fn text(args: &Args, stats: &QueueStats, instances: Option<&[InstanceRow]>) -> String {
    let mut out = format!(
        "queue {}\n  visible {}, in flight {}, dead letters {}\n",
        args.queue, stats.visible, stats.in_flight, stats.dead
    );
    if let Some(rows) = instances {
        let filter: Vec<String> = args
            .tags()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "fleet ({}): {} instances\n",
            filter.join(", "),
            rows.len()
        ));
        for r in rows {
            out.push_str(&format!(
                "  {:<20} {:<14} {:<12} {:<12} {:<10} {}\n",
                r.instance_id,
                r.state,
                r.instance_type,
                r.availability_zone,
                r.lifecycle,
                r.launch_time
            ));
        }
    }
    out
}

/// `failed instances: N`, then one line per instance: id, kind, when, reason.
fn failed_text(failed: &[FailedInstance]) -> String {
    let mut out = format!("failed instances: {}\n", failed.len());
    for f in failed {
        out.push_str(&format!(
            "  {:<20} {:<11} {:<21} {}\n",
            f.instance_id,
            f.kind,
            f.at.as_deref().unwrap_or("-"),
            f.reason
        ));
    }
    out
}

/// A bar on a terminal, one plain line otherwise.
fn show_progress(p: &Progress) {
    use std::io::IsTerminal;
    let line = format!(
        "plan: {} of {} jobs done ({:.1}%){}",
        p.done,
        p.planned,
        if p.planned == 0 {
            100.0
        } else {
            100.0 * p.done as f64 / p.planned as f64
        },
        if p.unexpected > 0 {
            format!(", {} results not in the plan", p.unexpected)
        } else {
            String::new()
        }
    );
    if std::io::stderr().is_terminal() {
        let bar = crate::output::progress_bar(p.planned, "jobs");
        bar.set_position(p.done.min(p.planned));
        bar.abandon();
    }
    crate::outln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_tags_parse() {
        assert_eq!(
            parse_tag("fleet=trips=x").unwrap(),
            ("fleet".to_string(), "trips=x".to_string())
        );
        assert!(parse_tag("nokey").is_err());
        assert!(parse_tag("=v").is_err());
    }

    #[test]
    fn fleet_is_the_module_tag_and_comes_before_the_other_tags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            args: Args,
        }
        let cmd = Cmd::parse_from([
            "status",
            "--queue",
            "q",
            "--fleet-tag",
            "team=data",
            "--fleet",
            "trips",
        ]);
        assert_eq!(
            cmd.args.tags(),
            [
                ("rangefleet:fleet".to_string(), "trips".to_string()),
                ("team".to_string(), "data".to_string())
            ]
        );
    }
}
