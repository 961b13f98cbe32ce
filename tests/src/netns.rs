//! A network namespace of the test's own with nothing in it but loopback, and TCP forwards
//! between its loopback and the host's.
//!
//! Why: Chromium aborts page loads with `ERR_NETWORK_CHANGED` whenever the host's interfaces
//! change, and Docker adds and removes them all the time while other tests start containers. A
//! browser in a namespace of its own sees no change, ever; it reaches the caasd under test
//! through forwards on the same port numbers (so addresses and the `Origin` the dashboard checks
//! read the same inside and out).
//!
//! A socket belongs to the namespace of the thread that made it, and `setns` changes only the
//! calling thread's, so each socket that must live inside is made by a short-lived thread that
//! enters the namespace first; everything else runs in the host's.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The namespace, alive while this (its file) is, and the forwards into and out of it, which
/// stop when it is dropped.
pub struct NetNs {
    ns: Arc<File>,
    stop: Arc<AtomicBool>,
}

impl NetNs {
    /// A new network namespace with loopback up.
    pub fn new() -> io::Result<NetNs> {
        let ns = std::thread::spawn(|| -> io::Result<File> {
            // SAFETY: unshare(2) on this thread only (it ends right after).
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            loopback_up()?;
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .expect("the namespace thread panicked")?;
        Ok(NetNs {
            ns: Arc::new(ns),
            stop: Arc::default(),
        })
    }

    /// Runs `f` on a thread inside the namespace.
    fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let ns = self.ns.clone();
        std::thread::spawn(move || {
            enter(&ns)?;
            f()
        })
        .join()
        .expect("a thread inside the namespace panicked")
    }

    /// The raw descriptor, for a child process to enter (see [`enter_fd`]).
    pub fn fd(&self) -> i32 {
        self.ns.as_raw_fd()
    }

    /// Connections to `127.0.0.1:port` inside the namespace reach `127.0.0.1:port` on the host.
    pub fn reach_host(&self, port: u16) -> io::Result<()> {
        let listener = self.inside(move || TcpListener::bind((Ipv4Addr::LOCALHOST, port)))?;
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        serve(listener, self.stop.clone(), move || TcpStream::connect(to));
        Ok(())
    }

    /// A host port whose connections reach `127.0.0.1:port` inside the namespace.
    pub fn expose(&self, port: u16) -> io::Result<u16> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let host_port = listener.local_addr()?.port();
        let ns = self.ns.clone();
        serve(listener, self.stop.clone(), move || {
            let ns = ns.clone();
            std::thread::spawn(move || {
                enter(&ns)?;
                TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            })
            .join()
            .expect("connecting inside the namespace panicked")
        });
        Ok(host_port)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Enters the namespace `fd` from a child process before it runs (for `pre_exec`).
pub fn enter_fd(fd: i32) -> io::Result<()> {
    // SAFETY: setns(2) with a descriptor of a network namespace this process holds open.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn enter(ns: &File) -> io::Result<()> {
    enter_fd(ns.as_raw_fd())
}

/// Accepts on `listener` until `stop`, joining each connection to one `connect` makes.
fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    connect: impl Fn() -> io::Result<TcpStream> + Send + 'static,
) {
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    match connect() {
                        Ok(server) => join(client, server),
                        Err(_) => drop(client),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// Copies both ways until each side has said all it will.
fn join(a: TcpStream, b: TcpStream) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    pipe(a, b2);
    pipe(b, a2);
}

/// Sets `lo` up in the calling thread's namespace (a new one has it down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket only for the interface ioctls, closed below; `ifreq` is plain
    // data, zeroed, with its name set to "lo".
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(sock);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn forwards_reach_across_the_namespace_and_nothing_else_is_there() {
        let ns = NetNs::new().expect("a network namespace (needs root)");
        // A host server reached from inside on the same port.
        let host = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host.local_addr().unwrap().port();
        ns.reach_host(port).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = host.accept().unwrap();
            let mut got = [0u8; 4];
            conn.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            conn.write_all(b"pong").unwrap();
        });
        let back = ns
            .inside(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.write_all(b"ping")?;
                s.shutdown(Shutdown::Write)?;
                let mut back = String::new();
                s.read_to_string(&mut back)?;
                Ok(back)
            })
            .unwrap();
        assert_eq!(back, "pong");
        // A server inside, reached from the host through the exposed port.
        let inner = ns
            .inside(|| {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let p = l.local_addr()?.port();
                std::thread::spawn(move || {
                    if let Ok((mut c, _)) = l.accept() {
                        let _ = c.write_all(b"hello");
                    }
                });
                Ok(p)
            })
            .unwrap();
        let exposed = ns.expose(inner).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", exposed)).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        // Only loopback inside: another host port is not there.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let other_port = other.local_addr().unwrap().port();
        let refused = ns.inside(move || Ok(TcpStream::connect(("127.0.0.1", other_port)).is_err()));
        assert!(refused.unwrap());
    }
}
