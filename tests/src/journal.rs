//! A stand-in for journald's native socket, for running the agent with
//! `--log-format journald` in a private mount namespace.
//!
//! [`JournalListener`] binds `systemd/journal/socket` in a temporary directory;
//! [`in_journal_namespace`] runs a command with that `systemd` directory mounted over
//! `/run/systemd`, so the real path the agent writes to reaches the listener and
//! nothing reaches the host's journal. Entries are parsed from the native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): `KEY=value\n`, or `KEY\n`, a 64-bit
//! little-endian length, the bytes and `\n`; an entry too big for one datagram comes as
//! a sealed memfd passed with `SCM_RIGHTS`.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::notify::wrap;
use crate::TempDir;

/// One journal entry: its fields in the order they were sent (a name may repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `(name, value)` pairs.
    pub fields: Vec<(String, Vec<u8>)>,
    /// Whether it came as a memfd rather than in the datagram itself.
    pub via_memfd: bool,
}

impl Entry {
    /// The first value of `name`, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    /// Every value of `name`, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
}

/// Parses one native-protocol entry. Field names are returned as sent (see
/// [`valid_field_name`] for what journald would keep).
pub fn parse(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let nl = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("field {} has no newline", fields.len()))?;
        let line = &data[..nl];
        let (name, value, rest) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], line[eq + 1..].to_vec(), &data[nl + 1..]),
            None => {
                let rest = &data[nl + 1..];
                let len: [u8; 8] = rest
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("field {:?} is cut in its length", lossy(line)))?;
                let len = usize::try_from(u64::from_le_bytes(len))
                    .map_err(|_| format!("field {:?} is too long", lossy(line)))?;
                let end = 8usize
                    .checked_add(len)
                    .filter(|&e| e < rest.len())
                    .ok_or_else(|| format!("field {:?} is cut in its value", lossy(line)))?;
                if rest[end] != b'\n' {
                    return Err(format!(
                        "field {:?} has no newline after its value",
                        lossy(line)
                    ));
                }
                (line, rest[8..end].to_vec(), &rest[end + 1..])
            }
        };
        fields.push((lossy(name), value));
        data = rest;
    }
    Ok(fields)
}

/// A name journald accepts from a client: 1–64 of `A-Z`, `0-9`, `_`, not starting
/// with a digit or `_` (those are journald's own, trusted fields).
pub fn valid_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && !b[0].is_ascii_digit()
        && b[0] != b'_'
        && b.iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Default)]
struct Shared {
    entries: Mutex<Vec<Entry>>,
    arrived: Condvar,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A native-protocol journald socket that keeps what it is sent, until dropped.
pub struct JournalListener {
    run_systemd: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    syncs: AtomicUsize,
    _dir: TempDir,
}

/// The field of [`JournalListener::sync`]'s marker entries.
const SYNC: &str = "RANGEFLEET_TEST_SYNC";

impl JournalListener {
    /// Binds `<temp>/systemd/journal/socket` and starts receiving.
    pub fn bind() -> JournalListener {
        let dir = TempDir::new("journal");
        let run_systemd = dir.0.join("systemd");
        std::fs::create_dir_all(run_systemd.join("journal")).expect("create journal dir");
        let socket = UnixDatagram::bind(run_systemd.join("journal/socket"))
            .expect("bind the journal socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || receive(&socket, &shared))
        };
        JournalListener {
            run_systemd,
            shared,
            thread: Some(thread),
            syncs: AtomicUsize::new(0),
            _dir: dir,
        }
    }

    /// The directory to mount over `/run/systemd`.
    pub fn run_systemd(&self) -> &Path {
        &self.run_systemd
    }

    /// Every non-empty entry received so far, in arrival order (sync markers left out).
    pub fn entries(&self) -> Vec<Entry> {
        let entries = self.shared.entries.lock().unwrap();
        entries
            .iter()
            .filter(|e| e.get(SYNC).is_none())
            .cloned()
            .collect()
    }

    /// Datagrams that were not valid entries (should be none).
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }

    /// Every entry sent before this call, once all of them have been read: a marker
    /// entry is sent and waited for, since the socket delivers in order. Call it after
    /// the sender has exited, to see everything it wrote without guessing a delay.
    pub fn sync(&self) -> Vec<Entry> {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{SYNC}={n}");
        UnixDatagram::unbound()
            .and_then(|s| {
                s.send_to(
                    format!("{marker}\n").as_bytes(),
                    self.run_systemd.join("journal/socket"),
                )
            })
            .expect("send the sync marker");
        let is_marker = |e: &Entry| e.get(SYNC).is_some_and(|v| v == n.to_string());
        self.wait_for(Duration::from_secs(30), is_marker)
            .expect("the sync marker comes back");
        let entries = self.shared.entries.lock().unwrap();
        let end = entries
            .iter()
            .position(is_marker)
            .expect("the marker is there");
        entries[..end]
            .iter()
            .filter(|e| e.get(SYNC).is_none())
            .cloned()
            .collect()
    }

    /// Waits up to `timeout` for an entry that `matches`; returns the first such entry.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let deadline = Instant::now() + timeout;
        let mut entries = self.shared.entries.lock().unwrap();
        loop {
            if let Some(e) = entries.iter().find(|e| matches(e)) {
                return Some(e.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            entries = self.shared.arrived.wait_timeout(entries, left).unwrap().0;
        }
    }
}

impl Drop for JournalListener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn receive(socket: &UnixDatagram, shared: &Shared) {
    // journald's own limit for a datagram entry is far below this.
    let mut buf = vec![0u8; 1 << 20];
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, fds) = match recv_with_fds(socket.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                shared.errors.lock().unwrap().push(format!("recvmsg: {e}"));
                continue;
            }
        };
        let (bytes, via_memfd) = match (n, fds.len()) {
            (_, 0) => (buf[..n].to_vec(), false),
            (0, 1) => {
                let mut data = Vec::new();
                let mut f = std::fs::File::from(fds.into_iter().next().expect("one fd"));
                // The sender's offset is at the end of what it wrote: read from 0.
                let read = std::io::Seek::rewind(&mut f).and_then(|()| f.read_to_end(&mut data));
                if let Err(e) = read {
                    shared
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("reading a memfd: {e}"));
                    continue;
                }
                (data, true)
            }
            (n, k) => {
                shared
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("a datagram of {n} bytes with {k} fds"));
                continue;
            }
        };
        if bytes.is_empty() {
            // tracing-journald's probe that the socket is there.
            continue;
        }
        match parse(&bytes) {
            Ok(fields) => {
                shared
                    .entries
                    .lock()
                    .unwrap()
                    .push(Entry { fields, via_memfd });
                shared.arrived.notify_all();
            }
            Err(e) => shared.errors.lock().unwrap().push(e),
        }
    }
}

/// One `recvmsg`, keeping any descriptors passed with `SCM_RIGHTS`.
fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 32];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is a live socket and msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* walk stays inside the control buffer the kernel filled.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(std::io::Error::other(
            "a datagram or its descriptors were cut short",
        ));
    }
    Ok((n as usize, fds))
}

/// `inner`, run in a private mount namespace where `run_systemd` is mounted over
/// `/run/systemd` (on a host without `/run/systemd`, over a fresh tmpfs `/run`).
/// As root this needs nothing more; otherwise it asks for a user namespace too.
pub fn in_journal_namespace(run_systemd: &Path, inner: &Command) -> Command {
    let script = r#"set -e
dir=$1; shift
if [ ! -d /run/systemd ]; then mount -t tmpfs tmpfs /run; mkdir /run/systemd; fi
mount --bind "$dir" /run/systemd
exec "$@""#;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut prefix: Vec<&OsStr> = Vec::new();
    if !root {
        prefix.extend([OsStr::new("--user"), OsStr::new("--map-root-user")]);
    }
    prefix.extend([
        OsStr::new("--mount"),
        OsStr::new("--propagation"),
        OsStr::new("private"),
        OsStr::new("--"),
        OsStr::new("/bin/sh"),
        OsStr::new("-c"),
        OsStr::new(script),
        OsStr::new("sh"),
        run_systemd.as_os_str(),
    ]);
    wrap("unshare", &prefix, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_binary_fields() {
        let mut d = b"PRIORITY=6\nMESSAGE\n".to_vec();
        d.extend_from_slice(&5u64.to_le_bytes());
        d.extend_from_slice(b"a\nb=c\nEMPTY=\n");
        let f = parse(&d).unwrap();
        assert_eq!(
            f,
            vec![
                ("PRIORITY".into(), b"6".to_vec()),
                ("MESSAGE".into(), b"a\nb=c".to_vec()),
                ("EMPTY".into(), Vec::new()),
            ]
        );
    }

    #[test]
    fn refuses_cut_entries() {
        let mut d = b"MESSAGE\n".to_vec();
        d.extend_from_slice(&10u64.to_le_bytes());
        d.extend_from_slice(b"short\n");
        assert!(parse(&d).is_err());
        assert!(parse(b"NO_NEWLINE=x").is_err());
        assert!(parse(b"M\n\x01\x00").is_err());
    }

    #[test]
    fn field_names() {
        for ok in ["MESSAGE", "JOB_ID", "A1", "CODE_LINE"] {
            assert!(valid_field_name(ok), "{ok}");
        }
        for bad in ["", "_PID", "1A", "job_id", "A-B", &"A".repeat(65)] {
            assert!(!valid_field_name(bad), "{bad}");
        }
    }
}
