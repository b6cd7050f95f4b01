//! [`Net`]: the o2net core on real sockets.
//!
//! Threads: one acceptor on the node's address, one timer thread for the core's timers, one
//! thread per connection that first connects (outbound) and then reads, and runs handlers for
//! the requests it reads, one at a time, as the kernel's single o2net work queue does. Sends are
//! synchronous: the caller's thread writes its message and waits for the status reply.
//!
//! Locking: one mutex holds the core, the sockets by connection, the waiting senders and the
//! subscribers. Everything that can block (socket writes, connects, handlers) runs after that
//! mutex is released; writes on one connection are serialized by its own mutex, so a status
//! reply or keepalive never interleaves with a message.

use super::core::{Action, CloseReason, ConnId, HandlerTable, Millis, NetCore, TxState};
use super::frame::{encode_message, Decoder, MsgHeader, SysStatus, O2NET_MAX_PAYLOAD_BYTES, O2NET_TCP_USER_TIMEOUT_MS};
use super::{NetConfig, NetError, NetEvent, NetNode};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type HandlerFn = Arc<dyn Fn(u8, &[u8]) -> i32 + Send + Sync>;

/// Sets the options o2net puts on every connection: TCP_NODELAY, and TCP_USER_TIMEOUT so large
/// that unacknowledged data never ends a connection by itself.
fn tune(sock: &Socket, write_timeout: Duration) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    sock.set_tcp_user_timeout(Some(Duration::from_millis(u64::from(O2NET_TCP_USER_TIMEOUT_MS))))?;
    // The kernel's writers block too; ours give up after the idle timeout so a peer that stops
    // reading cannot hold a sender forever.
    sock.set_write_timeout(Some(write_timeout))?;
    Ok(())
}

/// Opens a TCP connection from `from` (any port) to `to`, with o2net's socket options. The
/// source address matters: the accepting node identifies its peer by it.
pub fn dial(from: IpAddr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SockAddr::from(SocketAddr::new(from, 0)))?;
    tune(&sock, timeout)?;
    sock.connect_timeout(&SockAddr::from(to), timeout)?;
    Ok(sock.into())
}

/// One open connection's socket.
struct ConnIo {
    id: ConnId,
    writer: Mutex<TcpStream>,
    /// A second handle to shut the socket down while a writer may hold `writer`.
    ctl: TcpStream,
}

impl ConnIo {
    fn new(id: ConnId, stream: TcpStream) -> std::io::Result<Arc<ConnIo>> {
        let ctl = stream.try_clone()?;
        Ok(Arc::new(ConnIo { id, writer: Mutex::new(stream), ctl }))
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(bytes)
    }

    fn shutdown(&self) {
        let _ = self.ctl.shutdown(Shutdown::Both);
    }
}

struct Waiter {
    tx: mpsc::Sender<Result<i32, NetError>>,
    msg_type: u16,
    key: u32,
}

struct State {
    core: NetCore,
    conns: HashMap<ConnId, Arc<ConnIo>>,
    waiters: HashMap<(u8, u32), Waiter>,
    next_msg_num: HashMap<u8, u32>,
    subscribers: Vec<mpsc::Sender<NetEvent>>,
    /// Senders blocked until a connection comes up or fails.
    pending_senders: usize,
    /// When the timer thread means to wake; an earlier timer must wake it.
    timer_armed: Millis,
}

/// Work to do once the state mutex is released.
enum Job {
    Write { conn: Arc<ConnIo>, bytes: Vec<u8> },
    Connect { conn: ConnId, node: u8, from: SocketAddr, to: SocketAddr },
    Deliver { conn: Arc<ConnIo>, node: u8, header: MsgHeader, payload: Vec<u8> },
}

struct Inner {
    local: NetNode,
    local_addr: SocketAddr,
    send_timeout: Duration,
    io_timeout: Duration,
    epoch: Instant,
    state: Mutex<State>,
    /// Wakes senders waiting for a connection.
    conn_cv: Condvar,
    /// Wakes the timer thread.
    timer_cv: Condvar,
    handlers: RwLock<HandlerTable<HandlerFn>>,
    stopping: AtomicBool,
    listener: Socket,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running o2net node. Dropping it stops it.
pub struct Net {
    inner: Arc<Inner>,
}

fn check_config(cfg: &NetConfig) -> Result<(), NetError> {
    cfg.timeouts.validate()?;
    let mut nums = HashSet::new();
    let mut ips = HashSet::new();
    for n in std::iter::once(&cfg.local).chain(cfg.peers.iter().filter(|p| p.num != cfg.local.num)) {
        if !n.addr.is_ipv4() {
            return Err(NetError::Config(format!("node {} has address {}: o2net speaks IPv4 only", n.num, n.addr)));
        }
        if !nums.insert(n.num) {
            return Err(NetError::Config(format!("node number {} appears twice", n.num)));
        }
        // The accepting side knows its peer by source address alone.
        if !ips.insert(n.addr.ip()) {
            return Err(NetError::Config(format!("two nodes share the IP address {}", n.addr.ip())));
        }
    }
    Ok(())
}

impl Net {
    /// Binds the listener on the local node's address and starts the threads. Peers are not
    /// connected until [`Net::set_peer_live`] says heartbeat sees them.
    pub fn start(cfg: NetConfig) -> Result<Net, NetError> {
        check_config(&cfg)?;
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| NetError::io(&e))?;
        listener.set_reuse_address(true).map_err(|e| NetError::io(&e))?;
        listener.bind(&SockAddr::from(cfg.local.addr)).map_err(|e| {
            log::error!("o2net: Error {} while binding socket at {}", e, cfg.local.addr);
            NetError::io(&e)
        })?;
        listener.listen(64).map_err(|e| NetError::io(&e))?;
        let local_addr = listener.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(cfg.local.addr);
        let mut local = cfg.local.clone();
        local.addr = local_addr;
        let core = NetCore::new(local.clone(), &cfg.peers, cfg.timeouts);
        let io_timeout = Duration::from_millis(u64::from(cfg.timeouts.idle_timeout_ms));
        let inner = Arc::new(Inner {
            local,
            local_addr,
            send_timeout: cfg.send_timeout,
            io_timeout,
            epoch: Instant::now(),
            state: Mutex::new(State {
                core,
                conns: HashMap::new(),
                waiters: HashMap::new(),
                next_msg_num: HashMap::new(),
                subscribers: Vec::new(),
                pending_senders: 0,
                timer_armed: Millis::MAX,
            }),
            conn_cv: Condvar::new(),
            timer_cv: Condvar::new(),
            handlers: RwLock::new(HandlerTable::new()),
            stopping: AtomicBool::new(false),
            listener,
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("o2net-accept-{}", inner.local.num))
                .spawn(move || inner.accept_loop())
                .map_err(|e| NetError::io(&e))?
        };
        let timer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("o2net-timer-{}", inner.local.num))
                .spawn(move || inner.timer_loop())
                .map_err(|e| NetError::io(&e))?
        };
        inner.track(acceptor);
        inner.track(timer);
        log::debug!("o2net: node {} listening on {}", inner.local.num, local_addr);
        Ok(Net { inner })
    }

    /// The address the listener is bound to (the configured one, with the port filled in when
    /// it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn local_node(&self) -> u8 {
        self.inner.local.num
    }

    /// Heartbeat's word on a peer: connect to (or accept from) it only while it is live.
    pub fn set_peer_live(&self, node: u8, live: bool) {
        let inner = &self.inner;
        let mut st = inner.lock();
        let now = inner.now();
        let mut out = Vec::new();
        st.core.set_peer_live(now, node, live, &mut out);
        let jobs = inner.apply(&mut st, out);
        drop(st);
        inner.run(jobs);
    }

    /// Registers the handler for requests of (msg_type, key) with payloads up to `max_len`
    /// bytes. Its return value travels back as the reply's status. A longer payload is answered
    /// with O2NET_ERR_OVERFLOW, an unregistered pair with O2NET_ERR_NO_HNDLR.
    ///
    /// Handlers run on the reader thread of the connection the request came on, one at a time:
    /// a handler must not wait for a reply from the node whose request it handles (that reply
    /// would be read by the thread it blocks), just as kernel handlers queue such work instead.
    pub fn register_handler<F>(&self, msg_type: u16, key: u32, max_len: u32, handler: F) -> Result<(), NetError>
    where
        F: Fn(u8, &[u8]) -> i32 + Send + Sync + 'static,
    {
        let mut table = self.inner.handlers.write().unwrap_or_else(|e| e.into_inner());
        table.register(msg_type, key, max_len, Arc::new(handler))?;
        log::debug!("o2net: registered handler type {msg_type} key {key:08x}");
        Ok(())
    }

    pub fn unregister_handler(&self, msg_type: u16, key: u32) -> bool {
        self.inner.handlers.write().unwrap_or_else(|e| e.into_inner()).unregister(msg_type, key)
    }

    /// A channel that receives every later [`NetEvent`], in the order they happened.
    pub fn subscribe(&self) -> mpsc::Receiver<NetEvent> {
        let (tx, rx) = mpsc::channel();
        self.inner.lock().subscribers.push(tx);
        rx
    }

    /// Peers with a connection past the handshake, in number order.
    pub fn connected_nodes(&self) -> Vec<u8> {
        self.inner.lock().core.connected_nodes()
    }

    /// Peers reported idle ("has been idle for N secs") and silent since.
    pub fn idle_nodes(&self) -> Vec<u8> {
        self.inner.lock().core.idle_nodes()
    }

    /// Sends a request and waits for its status reply: `Ok(status)` is the peer handler's
    /// return value. Waits at most the configured send timeout, for the connection and then for
    /// the reply.
    pub fn send(&self, node: u8, msg_type: u16, key: u32, payload: &[u8]) -> Result<i32, NetError> {
        self.send_timeout(node, msg_type, key, payload, self.inner.send_timeout)
    }

    /// [`Net::send`] with its own timeout.
    pub fn send_timeout(
        &self,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<i32, NetError> {
        let inner = &self.inner;
        if payload.len() > O2NET_MAX_PAYLOAD_BYTES {
            log::debug!("o2net: total payload len {} too large", payload.len());
            return Err(NetError::PayloadTooLarge(payload.len()));
        }
        let deadline = Instant::now() + timeout;
        let mut st = inner.lock();
        let (conn, msg_num, rx) = loop {
            if inner.stopping.load(Ordering::SeqCst) {
                return Err(NetError::Stopped);
            }
            match st.core.tx(node) {
                TxState::Failed(e) => return Err(e),
                TxState::Ready(id) => {
                    let Some(conn) = st.conns.get(&id).cloned() else {
                        return Err(NetError::NotConnected(node));
                    };
                    let msg_num = st.alloc_msg_num(node);
                    let (tx, rx) = mpsc::channel();
                    st.waiters.insert((node, msg_num), Waiter { tx, msg_type, key });
                    break (conn, msg_num, rx);
                }
                TxState::Pending => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(NetError::Timeout(node));
                    }
                    st.pending_senders += 1;
                    st = inner.conn_cv.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                    st.pending_senders -= 1;
                }
            }
        };
        drop(st);
        // Fits: the payload length was checked against the page-sized maximum above.
        let hdr = MsgHeader::request(msg_type, key, payload.len() as u16, msg_num);
        if let Err(e) = conn.write(&encode_message(&hdr, payload)) {
            let mut st = inner.lock();
            st.waiters.remove(&(node, msg_num));
            let mut out = Vec::new();
            let now = inner.now();
            st.core.send_failed(now, conn.id, &e.to_string(), &mut out);
            let jobs = inner.apply(&mut st, out);
            drop(st);
            inner.run(jobs);
            return Err(NetError::io(&e));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                inner.lock().waiters.remove(&(node, msg_num));
                Err(NetError::Timeout(node))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(NetError::NodeDied(node)),
        }
    }

    /// Closes every connection, fails every waiting send, and joins the threads.
    pub fn stop(&self) {
        let inner = &self.inner;
        if inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut st = inner.lock();
            let now = inner.now();
            let mut out = Vec::new();
            st.core.stop(now, &mut out);
            let _ = inner.apply(&mut st, out);
            for (_, c) in st.conns.drain() {
                c.shutdown();
            }
            for (_, w) in st.waiters.drain() {
                let _ = w.tx.send(Err(NetError::Stopped));
            }
            inner.conn_cv.notify_all();
            inner.timer_cv.notify_all();
        }
        let _ = inner.listener.shutdown(Shutdown::Both);
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for h in handles {
            // A handler that stops its own node runs on a reader thread; do not join it.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
        log::debug!("o2net: node {} stopped", inner.local.num);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn alloc_msg_num(&mut self, node: u8) -> u32 {
        let next = self.next_msg_num.entry(node).or_insert(0);
        loop {
            let n = *next;
            *next = next.wrapping_add(1);
            if !self.waiters.contains_key(&(node, n)) {
                return n;
            }
        }
    }
}

impl Inner {
    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, h: JoinHandle<()>) {
        let mut t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    /// Carries out what needs the state (replies to waiters, events, closing sockets) and
    /// returns the blocking work for after the lock.
    fn apply(&self, st: &mut State, actions: Vec<Action>) -> Vec<Job> {
        let mut jobs = Vec::new();
        for a in actions {
            match a {
                Action::Connect { conn, node, from, to } => jobs.push(Job::Connect { conn, node, from, to }),
                Action::Send { conn, out } => {
                    if let Some(c) = st.conns.get(&conn) {
                        jobs.push(Job::Write { conn: c.clone(), bytes: out.to_bytes() });
                    }
                }
                Action::Close { conn } => {
                    if let Some(c) = st.conns.remove(&conn) {
                        c.shutdown();
                    }
                }
                Action::Deliver { conn, node, header, payload } => {
                    if let Some(c) = st.conns.get(&conn) {
                        jobs.push(Job::Deliver { conn: c.clone(), node, header, payload });
                    }
                }
                Action::Complete { node, msg_num, sys, status } => match st.waiters.remove(&(node, msg_num)) {
                    Some(w) => {
                        let r = match sys {
                            SysStatus::None => Ok(status),
                            SysStatus::NoHandler => Err(NetError::NoHandler { msg_type: w.msg_type, key: w.key }),
                            SysStatus::Overflow => Err(NetError::Overflow { msg_type: w.msg_type, key: w.key }),
                            SysStatus::Died => Err(NetError::NodeDied(node)),
                        };
                        let _ = w.tx.send(r);
                    }
                    None => log::debug!("o2net: status reply {msg_num} from node {node} has no waiter"),
                },
                Action::FailPending { node } => {
                    let keys: Vec<(u8, u32)> = st.waiters.keys().filter(|k| k.0 == node).copied().collect();
                    log::debug!("o2net: completed {} messages for node {node}", keys.len());
                    for k in keys {
                        if let Some(w) = st.waiters.remove(&k) {
                            let _ = w.tx.send(Err(NetError::NodeDied(node)));
                        }
                    }
                }
                Action::Event(e) => st.subscribers.retain(|s| s.send(e.clone()).is_ok()),
            }
        }
        // A send waiting for a connection must re-check even when nothing visible happened
        // (heartbeat down on a node that was never connected sets an error and no event).
        if st.pending_senders > 0 {
            self.conn_cv.notify_all();
        }
        if st.core.next_timer().is_some_and(|t| t < st.timer_armed) {
            self.timer_cv.notify_one();
        }
        jobs
    }

    /// Does the blocking work, feeding failures back into the core.
    fn run(self: &Arc<Self>, mut jobs: Vec<Job>) {
        while !jobs.is_empty() {
            let mut more = Vec::new();
            for job in jobs {
                match job {
                    Job::Write { conn, bytes } => {
                        if let Err(e) = conn.write(&bytes) {
                            more.extend(
                                self.with_core(|core, now, out| core.send_failed(now, conn.id, &e.to_string(), out)),
                            );
                        }
                    }
                    Job::Connect { conn, node, from, to } => self.spawn_connect(conn, node, from, to),
                    Job::Deliver { conn, node, header, payload } => {
                        let reply = self.deliver(node, &header, &payload);
                        if let Err(e) = conn.write(&reply.to_bytes()) {
                            more.extend(
                                self.with_core(|core, now, out| core.send_failed(now, conn.id, &e.to_string(), out)),
                            );
                        }
                    }
                }
            }
            jobs = more;
        }
    }

    /// Locks, lets `f` drive the core, applies its actions; returns the jobs.
    fn with_core(&self, f: impl FnOnce(&mut NetCore, Millis, &mut Vec<Action>)) -> Vec<Job> {
        let mut st = self.lock();
        let now = self.now();
        let mut out = Vec::new();
        f(&mut st.core, now, &mut out);
        self.apply(&mut st, out)
    }

    /// Runs the handler for one request and builds the status reply.
    fn deliver(&self, node: u8, hdr: &MsgHeader, payload: &[u8]) -> MsgHeader {
        let handler = {
            let table = self.handlers.read().unwrap_or_else(|e| e.into_inner());
            table.lookup(hdr).cloned()
        };
        match handler {
            Ok(h) => {
                let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(node, payload)))
                    .unwrap_or_else(|_| {
                        log::error!(
                            "o2net: handler for type {} key {:08x} panicked on a message from node {node}",
                            hdr.msg_type,
                            hdr.key
                        );
                        -libc::EIO
                    });
                MsgHeader::status_reply(hdr, SysStatus::None, status)
            }
            Err(sys) => {
                if sys == SysStatus::NoHandler {
                    log::debug!("o2net: couldn't find handler for type {} key {:08x}", hdr.msg_type, hdr.key);
                } else {
                    log::debug!(
                        "o2net: payload of {} bytes too long for handler type {} key {:08x}",
                        hdr.data_len,
                        hdr.msg_type,
                        hdr.key
                    );
                }
                MsgHeader::status_reply(hdr, sys, 0)
            }
        }
    }

    fn spawn_connect(self: &Arc<Self>, conn: ConnId, node: u8, from: SocketAddr, to: SocketAddr) {
        let inner = self.clone();
        let spawned =
            std::thread::Builder::new().name(format!("o2net-{}-to-{node}", self.local.num)).spawn(move || {
                // The kernel leaves a connect pending until the connect-expired timer; a bounded
                // wait does the same job and lets stop() join this thread.
                let timeout = inner.io_timeout.min(Duration::from_secs(3));
                let opened = dial(from.ip(), to, timeout)
                    .and_then(|s| Ok((s.try_clone()?, s)))
                    .and_then(|(r, s)| Ok((r, ConnIo::new(conn, s)?)));
                match opened {
                    Ok((read_half, io)) => {
                        let jobs = {
                            let mut st = inner.lock();
                            if inner.stopping.load(Ordering::SeqCst) {
                                io.shutdown();
                                return;
                            }
                            st.conns.insert(conn, io);
                            let now = inner.now();
                            let mut out = Vec::new();
                            st.core.connected(now, conn, &mut out);
                            inner.apply(&mut st, out)
                        };
                        inner.run(jobs);
                        inner.read_loop(conn, read_half);
                    }
                    Err(e) => {
                        let jobs =
                            inner.with_core(|core, now, out| core.connect_failed(now, conn, &e.to_string(), out));
                        inner.run(jobs);
                    }
                }
            });
        match spawned {
            Ok(h) => self.track(h),
            Err(e) => {
                let jobs = self.with_core(|core, now, out| core.connect_failed(now, conn, &e.to_string(), out));
                self.run(jobs);
            }
        }
    }

    fn accept_loop(self: Arc<Self>) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let (sock, addr) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        log::warn!("o2net: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    continue;
                }
            };
            let Some(from) = addr.as_socket() else { continue };
            if let Err(e) = tune(&sock, self.io_timeout) {
                log::warn!("o2net: cannot set socket options on connection from {from}: {e}");
                continue;
            }
            let stream: TcpStream = sock.into();
            let reader = stream.try_clone();
            let (accepted, jobs) = {
                let mut st = self.lock();
                let now = self.now();
                let mut out = Vec::new();
                let accepted = st.core.accept(now, from, &mut out);
                if let Some((id, _)) = accepted {
                    match ConnIo::new(id, stream) {
                        Ok(io) => {
                            st.conns.insert(id, io);
                        }
                        Err(e) => st.core.stream_closed(now, id, CloseReason::Io(e.to_string()), &mut out),
                    }
                }
                (accepted, self.apply(&mut st, out))
            };
            // The handshake goes out before the reader starts, so it is first on the wire.
            self.run(jobs);
            if let (Some((id, node)), Ok(r)) = (accepted, reader) {
                let inner = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("o2net-{}-from-{node}", self.local.num))
                    .spawn(move || inner.read_loop(id, r));
                match spawned {
                    Ok(h) => self.track(h),
                    Err(e) => {
                        let jobs = self.with_core(|core, now, out| {
                            core.stream_closed(now, id, CloseReason::Io(e.to_string()), out)
                        });
                        self.run(jobs);
                    }
                }
            }
        }
    }

    /// Reads frames until the stream ends or breaks, feeding each to the core and running what
    /// it asks for (handlers included) on this thread.
    fn read_loop(self: &Arc<Self>, conn: ConnId, mut stream: TcpStream) {
        let mut dec = Decoder::new();
        let mut buf = vec![0u8; 8192];
        let reason = 'read: loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break 'read CloseReason::PeerClosed,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break 'read CloseReason::Io(e.to_string()),
            };
            dec.push(&buf[..n]);
            loop {
                match dec.next_frame() {
                    Ok(Some(frame)) => {
                        let jobs = self.with_core(|core, now, out| core.frame(now, conn, frame, out));
                        self.run(jobs);
                    }
                    Ok(None) => break,
                    Err(e) => break 'read CloseReason::Frame(e),
                }
            }
        };
        let jobs = self.with_core(|core, now, out| core.stream_closed(now, conn, reason, out));
        self.run(jobs);
        let mut st = self.lock();
        if let Some(c) = st.conns.get(&conn) {
            // The core no longer owns this connection (or never did): drop the socket.
            if st.core.conn_node(conn).is_none() {
                c.shutdown();
                st.conns.remove(&conn);
            }
        }
    }

    fn timer_loop(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = self.now();
            let mut out = Vec::new();
            st.core.tick(now, &mut out);
            let jobs = self.apply(&mut st, out);
            if !jobs.is_empty() {
                drop(st);
                self.run(jobs);
                st = self.lock();
                continue;
            }
            let next = st.core.next_timer();
            let wait = match next {
                Some(t) => Duration::from_millis(t.saturating_sub(now)),
                None => Duration::from_secs(1),
            };
            st.timer_armed = next.unwrap_or(Millis::MAX);
            if wait.is_zero() {
                continue;
            }
            st = self.timer_cv.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
            st.timer_armed = Millis::MAX;
        }
    }
}
