//! `netmodel`: the network model (`rangefleet_tests::netmodel`) as a process, for the
//! bench scripts.
//!
//! ```text
//! netmodel --serve DIR | --upstream URL
//!          [--connections 32] [--scale 15] [--first-byte-ms MS] [--connection-mbps MB/s]
//!          [--slow-down-every N] [--bucket-ms 100]
//! ```
//!
//! `--serve DIR` starts an nginx serving DIR behind the model; `--upstream URL` puts the
//! model in front of a running server (moto). Defaults: S3 from an instance whose cap
//! is worth `--connections` connections, scaled down by `--scale`
//! ([`Model::scaled`]); `--first-byte-ms` and `--connection-mbps` override the scaled
//! figures. Prints `http://127.0.0.1:PORT` on the first line of stdout, then serves
//! until killed; `GET /_netmodel/stats` answers the counts and the byte timeline.

use std::time::Duration;

use rangefleet_tests::netmodel::{Model, NetModel};
use rangefleet_tests::nginx::Nginx;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage(name)))
    };
    let number = |name: &str, default: f64| -> f64 {
        value(name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage(name)))
    };
    let mut model = Model::scaled(number("--connections", 32.0), number("--scale", 15.0));
    if let Some(ms) = value("--first-byte-ms") {
        model.first_byte = Duration::from_secs_f64(
            ms.parse::<f64>()
                .unwrap_or_else(|_| usage("--first-byte-ms"))
                / 1e3,
        );
    }
    if value("--connection-mbps").is_some() {
        let connections = model.instance / model.per_connection;
        model.per_connection = number("--connection-mbps", 0.0) * 1e6;
        model.instance = model.per_connection * connections;
    }
    model.slow_down_every = number("--slow-down-every", 0.0) as u64;
    model.bucket = Duration::from_secs_f64(number("--bucket-ms", 100.0) / 1e3);

    let nginx = value("--serve").map(|dir| {
        Nginx::start(std::path::Path::new(&dir)).unwrap_or_else(|e| {
            eprintln!("netmodel: {e:#}");
            std::process::exit(1)
        })
    });
    let upstream = match (&nginx, value("--upstream")) {
        (Some(n), None) => n.url.clone(),
        (None, Some(u)) => u,
        _ => usage("--serve or --upstream"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let m = NetModel::start(&upstream, model).await;
        println!("{}", m.url);
        futures::future::pending::<()>().await;
        drop(m);
    });
    drop(nginx);
}

fn usage(what: &str) -> ! {
    eprintln!(
        "netmodel: bad or missing {what}\nusage: netmodel --serve DIR | --upstream URL \
         [--connections N] [--scale F] [--first-byte-ms MS] [--connection-mbps MB/s] \
         [--slow-down-every N] [--bucket-ms MS]"
    );
    std::process::exit(2)
}
