//! The on-instance config file: the agent reads `/etc/rangefleet/agent.yaml` (here
//! `RANGEFLEET_LOCAL_CONFIG`) when it exists, else user-data; `identity` says which.
//! Editing the file and restarting the agent changes what it does.

use std::time::Duration;

use rangefleet_tests::fleet::{event, Fleet, Gen};
use rangefleet_tests::{rangefleet, ImdsMock};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn identity(mock: &ImdsMock, local: &std::path::Path) -> Value {
    let out = rangefleet()
        .arg("identity")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &mock.url)
        .env("RANGEFLEET_LOCAL_CONFIG", local)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `concurrency` an agent logged in `agent_ready`, and where its config came from.
fn ready(agent: &rangefleet_tests::fleet::AgentProc) -> (u64, String) {
    let events = agent.events();
    let ready = events.iter().find(|e| event(e) == "agent_ready").unwrap();
    let loaded = events.iter().find(|e| event(e) == "config_loaded").unwrap();
    (
        ready["fields"]["concurrency"].as_u64().unwrap(),
        loaded["fields"]["source"].as_str().unwrap().to_string(),
    )
}

#[test]
fn editing_the_config_file_and_restarting_changes_the_agent() {
    let fleet = Fleet::new("config-file");
    fleet.gen(&Gen {
        colors: "yellow".into(),
        days: "2016-01-01".into(),
        records: 1_000,
        bad_every: 499,
    });
    fleet.plan(&fleet.data_url(), 100, &[]);
    let ud = fleet.userdata("ud", &[fleet.data_url()], "concurrency: 1\n");
    let id = "i-0configfile";
    let mock = ImdsMock::start(&["--userdata", ud.to_str().unwrap(), "--instance-id", id]);
    let local = fleet.out.parent().unwrap().join("agent.yaml");
    let env = |local: &std::path::Path| {
        vec![(
            "RANGEFLEET_LOCAL_CONFIG".to_string(),
            local.display().to_string(),
        )]
    };

    // No file: user-data.
    let v = identity(&mock, &local);
    assert_eq!(v["config_source"], serde_json::json!({"kind": "user-data"}));
    assert_eq!(v["config"]["concurrency"], 1);
    let mut a = fleet.agent_imds(&mock.url, id, true, &env(&local));
    assert!(a.wait(LIMIT).success(), "{}", a.log_tail());
    assert_eq!(ready(&a), (1, "user-data".to_string()));
    assert!(fleet.instance_summary(id).is_some());

    // An operator edits the file: more jobs at once, results elsewhere. Restart.
    let elsewhere = fleet.out.parent().unwrap().join("elsewhere");
    std::fs::write(
        &local,
        format!(
            "queue: {}\ninputs: [{}]\nresults: file://{}/\nconcurrency: 3\n",
            fleet.queue_url(),
            fleet.data_url(),
            elsewhere.display()
        ),
    )
    .unwrap();
    let v = identity(&mock, &local);
    assert_eq!(v["config_source"]["kind"], "file");
    assert_eq!(v["config_source"]["path"], local.display().to_string());
    assert_eq!(v["config"]["concurrency"], 3);
    let mut b = fleet.agent_imds(&mock.url, id, true, &env(&local));
    assert!(b.wait(LIMIT).success(), "{}", b.log_tail());
    assert_eq!(ready(&b), (3, local.display().to_string()));
    assert!(
        elsewhere
            .join("_instances")
            .join(format!("{id}.json"))
            .exists(),
        "the second run wrote its summary where the edited file says"
    );
}
