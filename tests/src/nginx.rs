//! A local nginx serving a directory over HTTP, for `http://` store tests.
//!
//! `scripts/test` installs nginx (apt). Each `Nginx` writes a minimal config into its own
//! temporary directory (pid file, logs and every temp path inside it), runs in the
//! foreground with no master process (so it never switches user), listens on a free
//! port of 127.0.0.1 and is killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_port, TempDir};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: u32 = 3;

/// A running nginx; killed on drop.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    dir: TempDir,
    child: Child,
}

/// The nginx binary: on `PATH`, else `/usr/sbin/nginx`.
pub fn nginx_bin() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nginx"))
            .find(|c| c.is_file())
    });
    match on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file())) {
        Some(p) => Ok(p),
        None => bail!(
            "nginx not found: run scripts/test (it installs what the tests need), \
             or `apt-get install nginx`"
        ),
    }
}

impl Nginx {
    /// Serves `root` at `http://127.0.0.1:PORT/`.
    pub fn start(root: &Path) -> anyhow::Result<Nginx> {
        let bin = nginx_bin()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&bin, root) {
                Ok(n) => return Ok(n),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_once(bin: &Path, root: &Path) -> anyhow::Result<Nginx> {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 client_body_temp_path {d}/client_body;\n\
             \x20 proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   root {};\n\
             \x20 }}\n\
             }}\n",
            root.display()
        );
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).context("failed to write nginx.conf")?;
        let child = Command::new(bin)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        let mut n = Nginx {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if let Some(status) = n.child.try_wait()? {
                bail!(
                    "nginx exited with {status} before listening: {}",
                    n.error_log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(n);
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "nginx did not listen within {START_TIMEOUT:?}: {}",
                    n.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
