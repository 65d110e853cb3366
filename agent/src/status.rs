//! `rangefleet status`: how a run is going, for the operator (DESIGN 5.6).
//!
//! Three independent views, each asked only when its flag is given: the queue's counts
//! (`Queue::stats`, SQS or SQLite), the fleet's instances by tag (EC2
//! DescribeInstances, one `tag:K` filter per `--fleet-tag`, every page), and the plan's
//! progress (`_plan.json` against the result documents written). Read-only: it changes
//! nothing anywhere.

use std::collections::BTreeSet;

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::exit;
use crate::plan::MANIFEST;
use crate::queue::QueueStats;
use crate::store::Store;

/// `rangefleet status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The queue: sqlite:///path/queue.db or an SQS queue URL.
    #[arg(long)]
    pub queue: String,
    /// The results prefix the plan wrote `_plan.json` to: show the plan's progress.
    #[arg(long)]
    pub results: Option<String>,
    /// List the fleet's instances carrying this tag, K=V (repeatable: all must match).
    #[arg(long = "fleet-tag", value_parser = parse_tag)]
    pub fleet_tags: Vec<(String, String)>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One instance of the fleet, as DescribeInstances reports it.
pub use crate::ec2::Instance as InstanceRow;

/// The plan's progress: jobs planned against result documents written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Jobs in `_plan.json`.
    pub planned: u64,
    /// Planned jobs with a result document.
    pub done: u64,
    /// Result documents for jobs the plan does not have.
    pub unexpected: u64,
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

/// Lists the instances carrying every tag of `tags`, all pages, sorted by id.
pub async fn fleet_instances(tags: &[(String, String)]) -> Result<Vec<InstanceRow>, String> {
    let fail = |e: crate::ec2::Ec2Error| format!("failed to describe the fleet's instances: {e}");
    let client = crate::ec2::Ec2::from_env(None).await.map_err(fail)?;
    client.describe_instances(tags).await.map_err(fail)
}

/// Planned jobs (from `_plan.json`) against result documents under `results`.
pub async fn progress(results: &Store) -> Result<Progress, String> {
    let manifest = match crate::plan::read_manifest(results).await? {
        Some(m) => m,
        None => {
            return Err(format!(
                "no {MANIFEST} under {}: nothing planned there yet",
                results.url()
            ))
        }
    };
    let planned: BTreeSet<&str> = manifest.jobs.iter().map(String::as_str).collect();
    let mut done = 0;
    let mut unexpected = 0;
    for obj in results.list().await.map_err(|e| e.to_string())? {
        let Some(id) = crate::job::job_id_of_result(&obj.key) else {
            continue;
        };
        if planned.contains(id.as_str()) {
            done += 1;
        } else {
            unexpected += 1;
        }
    }
    Ok(Progress {
        planned: planned.len() as u64,
        done,
        unexpected,
    })
}

/// Runs `status`; returns the exit code.
pub async fn run(args: StatusArgs) -> i32 {
    let Some(queue) = crate::commands::open_queue(&args.queue).await else {
        return exit::USAGE;
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
    let instances = if args.fleet_tags.is_empty() {
        None
    } else {
        match fleet_instances(&args.fleet_tags).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILURE;
            }
        }
    };
    let progress = match &args.results {
        None => None,
        Some(url) => {
            let Some(store) = crate::commands::open_store(url, "results").await else {
                return exit::USAGE;
            };
            match progress(&store).await {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::FAILURE;
                }
            }
        }
    };
    if args.json {
        let doc = to_json(&args, &stats, instances.as_deref(), progress.as_ref());
        crate::cli::print_json(&doc);
    } else {
        crate::out!("{}", text(&args, &stats, instances.as_deref()));
        if let Some(p) = &progress {
            show_progress(p);
        }
    }
    exit::OK
}

/// The `--json` document: `queue` always, `instances` with `--fleet-tag`, `plan` with
/// `--results`.
pub fn to_json(
    args: &StatusArgs,
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
            .fleet_tags
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

fn text(args: &StatusArgs, stats: &QueueStats, instances: Option<&[InstanceRow]>) -> String {
    let mut out = format!(
        "queue {}\n  visible {}, in flight {}, dead letters {}\n",
        args.queue, stats.visible, stats.in_flight, stats.dead
    );
    if let Some(rows) = instances {
        let filter: Vec<String> = args
            .fleet_tags
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
        let bar = crate::cli::progress_bar(p.planned, "jobs");
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

    #[tokio::test]
    async fn progress_counts_planned_results_only() {
        let store = Store::memory();
        let manifest = json!({"v": 1, "source": "file:///d/", "processor": "count",
            "record_length": 80, "records_per_job": 10, "objects": [],
            "jobs": ["a.rec#0+10", "a.rec#10+10", "b.rec#0+10"]});
        store
            .put(MANIFEST, serde_json::to_vec(&manifest).unwrap().into())
            .await
            .unwrap();
        for id in ["a.rec#0+10", "z.rec#0+1"] {
            let key = crate::job::result_key(id);
            store.put(&key, b"{}".to_vec().into()).await.unwrap();
        }
        store
            .put("_instances/i-1.json", b"{}".to_vec().into())
            .await
            .unwrap();
        let p = progress(&store).await.unwrap();
        assert_eq!(
            p,
            Progress {
                planned: 3,
                done: 1,
                unexpected: 1
            }
        );
    }
}
