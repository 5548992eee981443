//! sd_notify(3) without libsystemd: datagrams to `$NOTIFY_SOCKET`
//! (a path, or an abstract socket when it starts with `@`).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// From the environment; a no-op when not started by systemd.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let sock = UnixDatagram::unbound().ok()?;
            // never block the scheduler on a slow reader: drop instead
            sock.set_nonblocking(true).ok()?;
            Some((sock, path))
        });
        Notifier { target }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send one message such as `READY=1` or `STATUS=…`. Errors are logged once
    /// and otherwise ignored: notification must never stop the daemon.
    pub fn send(&self, msg: &str) {
        let Some((sock, path)) = &self.target else {
            return;
        };
        let res = if let Some(name) = path.strip_prefix('@') {
            send_abstract(sock, name, msg)
        } else {
            sock.send_to(msg.as_bytes(), path).map(|_| ())
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// Half of `$WATCHDOG_USEC`, when the watchdog is on for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        Some(Duration::from_micros(usec / 2))
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &str, msg: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_sock: &UnixDatagram, _name: &str, _msg: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets",
    ))
}
