//! SMPP 3.4 straight to an SMSC (docs/contract.md §6a), on the `rusmppc` client.
//!
//! Each worker keeps `smpp.binds` long-lived `bind_transceiver` binds, each reconnecting with
//! backoff and allowing `smpp.window` outstanding `submit_sm`. Requests are written without
//! waiting (`no_wait`) and their responses matched here by sequence number, so that a
//! `submit_sm` that never left (not sent: safe to retry) is told apart from one that left and
//! got no answer (ambiguous: SMPP has no idempotency key, so it is never sent again).
//!
//! What the SMSC sends back on a bind — receipts and subscribers' replies — is handed to the
//! caller as [`Inbound`] items, each with the `deliver_sm_resp` still to give, so that nothing
//! is acknowledged before it is recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use rand::Rng;
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::udhs::concatenation::ConcatenatedShortMessage8Bit;
use rusmpp::values::{DataCoding, InterfaceVersion, MessagePayload, MessageState, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Gateway, GatewayError, OutboundSms};
use crate::config::SmppLong;
use crate::domain::delivery::{parse_receipt_text, receipt_status, DeliveryStatus, Idempotency};
use crate::domain::sms::{self, Encoding};

/// How often an idle bind asks the SMSC whether it is still there.
const ENQUIRE_LINK_EVERY: Duration = Duration::from_secs(30);
/// Reconnection waits double from this, with jitter, up to `RECONNECT_MAX`.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A later part refused for a reason that leaves it unsent is tried again this many times in
/// place, so that the parts already accepted are not sent a second time.
const PART_TRIES: u32 = 5;
/// The longest pause after `ESME_RTHROTTLED`; each throttle in a row doubles it from 100 ms.
const THROTTLE_MAX: Duration = Duration::from_secs(5);
/// Messages whose receipts are followed in memory, oldest forgotten first beyond this.
const TRACKED_MESSAGES: usize = 1_000_000;
/// Parts of subscribers' long replies waiting for the rest.
const TRACKED_REPLY_PARTS: usize = 10_000;

/// Everything a bind needs, from `[smpp]`; the source address is each message's sender.
#[derive(Clone)]
pub struct SmppSettings {
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub window: usize,
    pub binds: usize,
    pub long: SmppLong,
    /// `Some` runs the binds over TLS with these roots.
    pub tls: Option<rustls::ClientConfig>,
    pub timeout: Duration,
    pub receipt_wait: Duration,
}

/// Something the SMSC sent that the application must record, then answer.
#[derive(Debug)]
pub enum Inbound {
    /// A delivery receipt that settles a message (for a long message: the one its parts settle).
    Receipt { message_id: String, status: DeliveryStatus, answer: Answer },
    /// A subscriber's message (a long one reassembled from its parts).
    Reply { from: String, to: String, text: String, answer: Answer },
}

/// The `deliver_sm_resp` owed for a `deliver_sm`.
#[derive(Debug)]
pub struct Answer {
    /// The bind and sequence number of each `deliver_sm` answered together (a long reply's
    /// parts are answered once the whole reply is recorded).
    to: Vec<(rusmppc::Client, u32)>,
    _owed: Owed,
}

/// Counts an answer not given yet, so that closing waits for what is being recorded.
#[derive(Debug)]
struct Owed(Arc<Receipts>);

impl Owed {
    fn new(receipts: &Arc<Receipts>) -> Owed {
        receipts.owed.fetch_add(1, Ordering::Relaxed);
        Owed(receipts.clone())
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.0.owed.fetch_sub(1, Ordering::Relaxed);
        self.0.settled.notify_waiters();
    }
}

impl Answer {
    /// Recorded: the SMSC may forget it.
    pub async fn ok(self) {
        self.send(CommandStatus::EsmeRok).await;
    }

    /// Not recorded this time: the SMSC keeps it and delivers it again later.
    pub async fn later(self) {
        self.send(CommandStatus::EsmeRxTAppn).await;
    }

    /// Answered with `other`: one answer for both.
    fn join(mut self, other: Answer) -> Answer {
        self.to.extend(other.to);
        self
    }

    async fn send(self, status: CommandStatus) {
        for (client, sequence) in &self.to {
            if let Err(error) = client.status(status).deliver_sm_resp(*sequence, DeliverSmResp::default()).await {
                // The bind is gone; the SMSC delivers what it was not answered for again.
                tracing::info!(%error, "deliver_sm_resp not sent");
            }
        }
    }

    /// Answers without holding up the bind's reader.
    fn ok_in_background(self) {
        tokio::spawn(self.ok());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmppError {
    #[error("the SMSC refused the bind: {0} (check smpp.system_id, smpp.password and smpp.system_type)")]
    BindRefused(String),
}

/// A response, or one that came before its request was registered here.
enum Slot {
    Waiting(oneshot::Sender<(Command, Noting)>, Noting),
    Arrived(Box<Command>),
}

/// How the receipt tracker notes a part the SMSC accepted, as its response is read (before
/// any receipt for it can be: the bind reads in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noting {
    /// Accepted, with its message still being sent: its receipts are held until the message
    /// is sent whole. Also a response that came before its request was registered here.
    Part,
    /// A message's only part: its receipts are followed from its response on, and its sender
    /// has nothing more to tell the tracker.
    Whole,
}

/// Maps of ids the SMSC gives: hashed on every part sent, by a fast hasher seeded per map.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// One bound connection: the client and the responses its requests wait for.
#[derive(Clone)]
struct Link {
    client: rusmppc::Client,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    slots: Map<u32, Slot>,
    /// Requests whose sender gave up waiting (ambiguous, `unknown`): a late answer is dropped.
    given_up: Set<u32>,
}

impl Pending {
    /// Hands a response to the request waiting for it, with how it was noted. `note` runs
    /// before the sender can see the response, and not for a response given up on.
    fn route(pending: &Mutex<Pending>, response: Command, note: impl FnOnce(&Command, Noting)) {
        let mut pending = pending.lock().expect("pending lock");
        let sequence = response.sequence_number();
        if pending.given_up.remove(&sequence) {
            return;
        }
        match pending.slots.remove(&sequence) {
            Some(Slot::Waiting(waiting, noting)) => {
                note(&response, noting);
                let _ = waiting.send((response, noting));
            }
            // Its request is still being registered, so what it is a part of is not known.
            _ => {
                note(&response, Noting::Part);
                pending.slots.insert(sequence, Slot::Arrived(Box::new(response)));
            }
        }
    }

    /// Waits for the response to `sequence`, to be noted as `noting` says.
    fn wait_for(pending: &Mutex<Pending>, sequence: u32, noting: Noting) -> oneshot::Receiver<(Command, Noting)> {
        let (sender, receiver) = oneshot::channel();
        let mut pending = pending.lock().expect("pending lock");
        match pending.slots.remove(&sequence) {
            Some(Slot::Arrived(response)) => {
                let _ = sender.send((*response, Noting::Part));
            }
            _ => {
                pending.slots.insert(sequence, Slot::Waiting(sender, noting));
            }
        }
        receiver
    }

    /// Stops waiting for `sequence`, unless its response came at this very moment (then
    /// noted as a part).
    fn give_up(pending: &Mutex<Pending>, sequence: u32) -> Option<Command> {
        let mut pending = pending.lock().expect("pending lock");
        match pending.slots.remove(&sequence) {
            Some(Slot::Arrived(response)) => Some(*response),
            Some(Slot::Waiting(..)) => {
                pending.given_up.insert(sequence);
                None
            }
            // Routed to the sender's channel already, where the sender finds it.
            None => None,
        }
    }
}

/// A bind's TCP stream, or the TLS stream over it.
type Io = tokio_util::either::Either<tokio::net::TcpStream, tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens a connection to an SMSC (TLS when given a configuration) and starts driving it;
/// nothing is bound yet. `take` sees each event as it is read, in the connection's own task,
/// and gives back those left for the returned receiver. Public for the benchmark's raw client,
/// which must not stall either.
pub async fn connect<T>(
    builder: rusmppc::ConnectionBuilder,
    host: &str,
    port: u16,
    tls: Option<rustls::ClientConfig>,
    take: T,
) -> std::io::Result<(rusmppc::Client, mpsc::UnboundedReceiver<rusmppc::Event>)>
where
    T: FnMut(rusmppc::Event) -> Option<rusmppc::Event> + Send + Unpin + 'static,
{
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    // PDUs are small and each waits for an answer: Nagle's algorithm would hold them back.
    tcp.set_nodelay(true)?;
    let io: Io = match tls {
        None => tokio_util::either::Either::Left(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
            tokio_util::either::Either::Right(stream)
        }
    };
    let wrote = Arc::new(AtomicU64::new(0));
    let (client, events, connection) = builder.no_spawn().connected(CountingIo { io, wrote: wrote.clone() });
    let (forward, left) = mpsc::unbounded_channel();
    tokio::spawn(Driver { connection: Box::pin(connection), events, take, forward, wrote });
    Ok((client, left))
}

/// Drives a rusmppc 0.4 connection.
///
/// Each time it is polled, the connection takes at most five queued requests and writes about
/// two, then waits for the socket or its timer without waking itself, so requests queued
/// behind them would stall until an answer comes in or the next enquire_link (30 s). A poll
/// that wrote something may have left more to write, so it is followed by another at once; a
/// poll that wrote nothing left the connection waiting on the socket and on its queue of
/// requests, which wake it.
///
/// What the connection read is taken in the same task, right after it: responses reach their
/// senders without a hop through another task, and in the order they were read.
struct Driver<F, E, T> {
    connection: std::pin::Pin<Box<F>>,
    events: E,
    take: T,
    forward: mpsc::UnboundedSender<rusmppc::Event>,
    wrote: Arc<AtomicU64>,
}

impl<F, E, T> std::future::Future for Driver<F, E, T>
where
    F: std::future::Future<Output = ()>,
    E: futures_util::Stream<Item = rusmppc::Event> + Unpin,
    T: FnMut(rusmppc::Event) -> Option<rusmppc::Event> + Unpin,
{
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let this = self.get_mut();
        let before = this.wrote.load(Ordering::Relaxed);
        let polled = this.connection.as_mut().poll(cx);
        // Everything the poll read is in the channel already: the loop ends.
        while let std::task::Poll::Ready(Some(event)) = this.events.poll_next_unpin(cx) {
            if let Some(event) = (this.take)(event) {
                let _ = this.forward.send(event);
            }
        }
        if polled.is_pending() && this.wrote.load(Ordering::Relaxed) != before {
            cx.waker().wake_by_ref();
        }
        polled
    }
}

/// A stream that counts the bytes written to it (see [`Driver`]).
struct CountingIo {
    io: Io,
    wrote: Arc<AtomicU64>,
}

impl tokio::io::AsyncRead for CountingIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.count(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.count(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl CountingIo {
    fn count(&self, polled: &std::task::Poll<std::io::Result<usize>>) {
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.wrote.fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

struct Bind {
    link: watch::Sender<Option<Link>>,
    window: Arc<Semaphore>,
}

/// `ESME_RTHROTTLED` pauses every send of this worker, longer for each throttle in a row.
#[derive(Default)]
struct Throttle {
    until: Mutex<Option<Instant>>,
    /// Whether `until` was ever set: most sends never see a throttle and skip the lock.
    hit_once: AtomicBool,
    in_a_row: AtomicU32,
}

impl Throttle {
    fn hit(&self) -> Duration {
        let n = self.in_a_row.fetch_add(1, Ordering::Relaxed).min(6);
        let pause = (Duration::from_millis(100) * 2u32.pow(n)).min(THROTTLE_MAX);
        let mut until = self.until.lock().expect("throttle lock");
        self.hit_once.store(true, Ordering::Release);
        let end = Instant::now() + pause;
        *until = Some(until.map_or(end, |u| u.max(end)));
        pause
    }

    fn passed(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }

    async fn wait(&self) {
        if !self.hit_once.load(Ordering::Acquire) {
            return;
        }
        let until = *self.until.lock().expect("throttle lock");
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
}

/// Receipts of the messages this worker sent, followed until each message is settled: a long
/// message is delivered when every part's receipt says so, undeliverable with the first part
/// that is not.
#[derive(Debug)]
struct Receipts<T = Answer> {
    state: Mutex<ReceiptState<T>>,
    settled: Notify,
    /// `deliver_sm` handed over and not answered yet.
    owed: AtomicUsize,
}

impl<T> Default for Receipts<T> {
    fn default() -> Self {
        Receipts { state: Mutex::new(ReceiptState::default()), settled: Notify::new(), owed: AtomicUsize::new(0) }
    }
}

#[derive(Debug)]
struct ReceiptState<T = Answer> {
    /// Id of a later part → the message's (first part's) id.
    part_of: Map<String, Arc<str>>,
    /// Message id → its parts whose receipt has not come.
    waiting: Map<Arc<str>, Left>,
    order: VecDeque<Arc<str>>,
    /// Parts accepted whose message is still being sent (so not known here yet): receipts
    /// that come for them wait here, unanswered, until it is.
    unassigned: Map<String, Vec<(DeliveryStatus, T)>>,
    /// Parts whose receipts say nothing more: those of messages settled already, and later
    /// parts delivered (a message is settled by its first part's id).
    done: Set<String>,
}

impl<T> Default for ReceiptState<T> {
    fn default() -> Self {
        ReceiptState {
            part_of: Map::default(),
            waiting: Map::default(),
            order: VecDeque::new(),
            unassigned: Map::default(),
            done: Set::default(),
        }
    }
}

/// The parts of a message whose receipt has not come: most messages have one part, and
/// its id is the message's.
#[derive(Debug)]
struct Left {
    first: bool,
    later: Vec<String>,
}

impl Left {
    /// `id`'s receipt came; whether none is left to come.
    fn receipted(&mut self, id: &str, first: &str) -> bool {
        if id == first {
            self.first = false;
        } else {
            self.later.retain(|part| part != id);
        }
        !self.first && self.later.is_empty()
    }
}

/// What a part's receipt means for its message.
#[derive(Debug, PartialEq, Eq)]
enum Settles<T = Answer> {
    /// The message, under this id, is settled with this status: recorded, then answered.
    Message(String, DeliveryStatus, T),
    /// Nothing to record (more parts are to come, or the message is settled): answered at once.
    NotYet(T),
    /// Its message is still being sent: kept until it is.
    Held,
}

impl<T> Receipts<T> {
    /// A part the SMSC accepted, noted as its response is read, before any receipt for it can
    /// be: the bind reads in order.
    fn accepted(&self, id: &str) {
        let mut state = self.state.lock().expect("receipts lock");
        if state.unassigned.len() >= TRACKED_MESSAGES {
            // Responses that came after their sender gave up; their receipts pass as they come.
            state.unassigned.retain(|_, held| !held.is_empty());
        }
        state.unassigned.insert(id.to_string(), Vec::new());
    }

    /// A message of one part the SMSC accepted, noted as its response is read: no receipt
    /// for it can have come yet, and its receipts are followed from now on.
    fn followed(&self, id: &str) {
        self.state.lock().expect("receipts lock").follow(Arc::from(id), Vec::new());
    }

    /// Every part of a message accepted: its receipts are followed from now on, those already
    /// in applied. Gives what settles it, if they do, and the answers now due.
    fn sent(&self, ids: &[String]) -> (Vec<(String, DeliveryStatus, T)>, Vec<T>) {
        let mut state = self.state.lock().expect("receipts lock");
        let first: Arc<str> = Arc::from(ids[0].as_str());
        let mut early = Vec::new();
        for id in ids {
            early.extend(state.unassigned.remove(id).unwrap_or_default().into_iter().map(|(s, a)| (id.clone(), s, a)));
        }
        // An SMSC may give several parts one id: each id is waited for once.
        let mut later: Vec<String> = Vec::with_capacity(ids.len() - 1);
        for id in &ids[1..] {
            if **id != *first && !later.contains(id) {
                state.part_of.insert(id.clone(), first.clone());
                later.push(id.clone());
            }
        }
        state.follow(first, later);
        drop(state);
        let mut due = Vec::new();
        let mut settled = Vec::new();
        for (id, status, answer) in early {
            match self.receipt(&id, status, answer) {
                Settles::Message(first, status, answer) => settled.push((first, status, answer)),
                Settles::NotYet(answer) => due.push(answer),
                Settles::Held => {}
            }
        }
        (settled, due)
    }

    /// A message given up on after some of its parts were accepted: the receipts held for
    /// them settle nothing here (the message is `unknown`, for the operator).
    fn abandon(&self, ids: &[String]) -> Vec<T> {
        let mut state = self.state.lock().expect("receipts lock");
        ids.iter().flat_map(|id| state.unassigned.remove(id).unwrap_or_default()).map(|(_, answer)| answer).collect()
    }

    fn receipt(&self, id: &str, status: DeliveryStatus, answer: T) -> Settles<T> {
        let mut state = self.state.lock().expect("receipts lock");
        if let Some(held) = state.unassigned.get_mut(id) {
            held.push((status, answer));
            return Settles::Held;
        }
        if state.done.remove(id) {
            return Settles::NotYet(answer);
        }
        let first = match state.part_of.get(id) {
            Some(first) => first.clone(),
            None => match state.waiting.get_key_value(id) {
                Some((first, _)) => first.clone(),
                // Sent by another worker or before a restart: its id is the message's, or unknown.
                None => return Settles::Message(id.to_string(), status, answer),
            },
        };
        let settled = match status {
            DeliveryStatus::Delivered => state.waiting.get_mut(&first).is_none_or(|left| left.receipted(id, &first)),
            _ => true,
        };
        if !settled {
            if *id != *first && state.part_of.remove(id).is_some() {
                state.remember_done(id.to_string());
            }
            return Settles::NotYet(answer);
        }
        state.settle(&first);
        drop(state);
        self.settled.notify_waiters();
        Settles::Message(first.to_string(), status, answer)
    }

    fn outstanding(&self) -> usize {
        self.state.lock().expect("receipts lock").waiting.len()
    }

    /// Until every message sent has its receipt, or `deadline`.
    async fn wait_all(&self, deadline: tokio::time::Instant) {
        loop {
            let settled = self.settled.notified();
            if self.outstanding() == 0 && self.owed.load(Ordering::Relaxed) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return;
            }
        }
    }
}

impl<T> ReceiptState<T> {
    /// Follows a message's receipts: its first part's and those of `later` parts (already
    /// entered in `part_of`).
    fn follow(&mut self, first: Arc<str>, later: Vec<String>) {
        self.waiting.insert(first.clone(), Left { first: true, later });
        self.order.push_back(first);
        // Settled messages leave their ids here; they are skipped as they come to the front.
        while self.waiting.len() > TRACKED_MESSAGES || self.order.len() > 2 * TRACKED_MESSAGES {
            let Some(oldest) = self.order.pop_front() else { break };
            self.evict(&oldest);
        }
    }

    /// A message settled: receipts still to come for its parts say nothing more.
    fn settle(&mut self, first: &str) {
        if let Some(left) = self.waiting.remove(first) {
            if left.first {
                self.remember_done(first.to_string());
            }
            for part in left.later {
                self.part_of.remove(&part);
                self.remember_done(part);
            }
        }
    }

    fn remember_done(&mut self, part: String) {
        if self.done.len() >= TRACKED_MESSAGES {
            self.done.clear();
        }
        self.done.insert(part);
    }

    /// A message followed too long: its receipts pass on under their own ids from now on.
    fn evict(&mut self, first: &str) {
        if let Some(left) = self.waiting.remove(first) {
            for part in left.later {
                self.part_of.remove(&part);
            }
        }
    }
}

/// A long reply's sender and concatenation reference.
type ReplyKey = (String, u16);
/// One part's text and answer, once it has come.
type ReplyPart<T> = Option<(String, T)>;

/// Parts of subscribers' long replies, by sender and reference, until the last one comes, each
/// with its `deliver_sm` still to answer.
struct ReplyParts<T = Answer> {
    parts: Mutex<HashMap<ReplyKey, Vec<ReplyPart<T>>>>,
}

impl<T> Default for ReplyParts<T> {
    fn default() -> Self {
        ReplyParts { parts: Mutex::new(HashMap::new()) }
    }
}

/// What a part of a reply makes of it.
#[derive(Debug, PartialEq, Eq)]
enum Joined<T> {
    /// The whole text, and the answers of all its parts.
    Whole(String, Vec<T>),
    Waiting,
}

impl<T> ReplyParts<T> {
    /// Adds `part` (1-based, of `total`). Also gives the answers of parts dropped unjoined
    /// (the SMSC is to deliver them again).
    fn add(&self, from: &str, reference: u16, total: u8, part: u8, text: String, answer: T) -> (Joined<T>, Vec<T>) {
        let mut parts = self.parts.lock().expect("reply parts lock");
        let mut dropped = Vec::new();
        if parts.len() >= TRACKED_REPLY_PARTS {
            // Replies whose parts never all came.
            dropped.extend(parts.drain().flat_map(|(_, slots)| slots.into_iter().flatten().map(|(_, a)| a)));
        }
        let key = (from.to_string(), reference);
        let slots = parts.entry(key.clone()).or_insert_with(|| (0..total).map(|_| None).collect());
        if slots.len() != usize::from(total) || part == 0 || part > total {
            // Does not fit what came before under this reference: taken as a text of its own.
            if let Some(earlier) = parts.remove(&key) {
                dropped.extend(earlier.into_iter().flatten().map(|(_, a)| a));
            }
            return (Joined::Whole(text, vec![answer]), dropped);
        }
        if let Some((_, again)) = slots[usize::from(part - 1)].replace((text, answer)) {
            dropped.push(again);
        }
        if slots.iter().all(Option::is_some) {
            let (texts, answers): (Vec<String>, Vec<T>) =
                parts.remove(&key).unwrap_or_default().into_iter().flatten().unzip();
            return (Joined::Whole(texts.concat(), answers), dropped);
        }
        (Joined::Waiting, dropped)
    }
}

pub struct SmppGateway {
    settings: SmppSettings,
    binds: Vec<Arc<Bind>>,
    next_bind: AtomicUsize,
    throttle: Throttle,
    receipts: Arc<Receipts>,
    reference: AtomicU32,
    closing: AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// For receipts that came before their message was sent whole; let go of at close.
    inbound: Mutex<Option<mpsc::UnboundedSender<Inbound>>>,
}

impl SmppGateway {
    /// Starts the binds and waits for the first to be bound, so that refused credentials stop
    /// the command at once. An SMSC that cannot be reached is tried again in the background
    /// while sends find no bind and are retried.
    pub async fn connect(
        settings: SmppSettings,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Result<Arc<SmppGateway>, SmppError> {
        let binds: Vec<Arc<Bind>> = (0..settings.binds)
            .map(|_| Arc::new(Bind { link: watch::channel(None).0, window: Arc::new(Semaphore::new(settings.window)) }))
            .collect();
        let gateway = Arc::new(SmppGateway {
            binds,
            next_bind: AtomicUsize::new(0),
            throttle: Throttle::default(),
            receipts: Arc::new(Receipts::default()),
            reference: AtomicU32::new(rand::rng().random()),
            closing: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            inbound: Mutex::new(Some(inbound.clone())),
            settings,
        });
        let (first_tx, first_rx) = oneshot::channel();
        let mut first_tx = Some(first_tx);
        let replies = Arc::new(ReplyParts::default());
        for (index, bind) in gateway.binds.iter().enumerate() {
            let keeper = BindKeeper {
                index,
                settings: gateway.settings.clone(),
                bind: bind.clone(),
                receipts: gateway.receipts.clone(),
                replies: replies.clone(),
                inbound: inbound.clone(),
                stop: gateway.stop.clone(),
            };
            let first = if index == 0 { first_tx.take() } else { None };
            gateway.tasks.lock().expect("tasks lock").push(tokio::spawn(keeper.run(first)));
        }
        match first_rx.await {
            Ok(Err(refused)) => {
                gateway.stop.cancel();
                Err(refused)
            }
            _ => Ok(gateway),
        }
    }

    fn next_reference(&self) -> u8 {
        (self.reference.fetch_add(1, Ordering::Relaxed) % 256) as u8
    }

    /// A bound bind, taking turns, one with room in its window first; waits up to the
    /// timeout for one to come up.
    async fn bound(&self) -> Result<(Arc<Bind>, Link), GatewayError> {
        let start = self.next_bind.fetch_add(1, Ordering::Relaxed);
        let n = self.binds.len();
        let turns = || (0..n).map(|offset| &self.binds[(start + offset) % n]);
        let has_room = |bind: &&Arc<Bind>| bind.window.available_permits() > 0;
        for bind in turns().filter(has_room).chain(turns()) {
            if let Some(link) = bind.link.borrow().clone() {
                return Ok((bind.clone(), link));
            }
        }
        let bind = self.binds[start % n].clone();
        let mut watching = bind.link.subscribe();
        let waited = tokio::time::timeout(self.settings.timeout, watching.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(link)) => {
                let link = link.clone().expect("waited for a link");
                Ok((bind, link))
            }
            _ => Err(GatewayError::Transient("no bind to the SMSC is up".into())),
        }
    }

    /// Sends one `submit_sm` within its bind's window and waits for its response. `on` is the
    /// bind a message's earlier parts went on: its parts stay on it while it is up.
    /// Gives the message id and how the tracker noted the part.
    async fn submit(
        &self,
        on: &mut Option<Arc<Bind>>,
        pdu: SubmitSm,
        noting: Noting,
    ) -> Result<(String, Noting), GatewayError> {
        let current = on.as_ref().and_then(|bind| bind.link.borrow().clone().map(|link| (bind.clone(), link)));
        let (bind, link) = match current {
            Some(current) => current,
            None => self.bound().await?,
        };
        *on = Some(bind.clone());
        let timeout = self.settings.timeout;
        // No time limit: each slot comes back within `timeout` (an answer or giving up on one),
        // and a message that waited is not refused for it.
        let _slot = bind.window.acquire().await.map_err(|_| GatewayError::Transient("bind closed".into()))?;
        // Checked with a slot in hand: a send that waited for the slot while another was
        // throttled waits out the pause too.
        self.throttle.wait().await;
        if link.client.is_closed() {
            return Err(GatewayError::Transient("submit_sm not sent: the bind is closed".into()));
        }
        // Once handed to the connection, a request may be on the wire even when rusmppc reports
        // the connection closed: from here on a failure is ambiguous.
        let sequence =
            link.client.no_wait().submit_sm(pdu).await.map_err(|error| {
                GatewayError::Ambiguous(format!("the bind was lost while writing submit_sm: {error}"))
            })?;
        let mut response = Pending::wait_for(&link.pending, sequence, noting);
        match tokio::time::timeout(timeout, &mut response).await {
            Ok(Ok((response, noted))) => Ok((self.classify(response)?, noted)),
            Ok(Err(_)) => Err(GatewayError::Ambiguous("the bind was lost before the submit_sm_resp".into())),
            Err(_) => {
                let came = Pending::give_up(&link.pending, sequence).map(|response| (response, Noting::Part));
                match came.or_else(|| response.try_recv().ok()) {
                    // It came as the wait ran out.
                    Some((response, noted)) => Ok((self.classify(response)?, noted)),
                    None => {
                        Err(GatewayError::Ambiguous(format!("no submit_sm_resp within {} ms", timeout.as_millis())))
                    }
                }
            }
        }
    }

    fn classify(&self, response: Command) -> Result<String, GatewayError> {
        let status = response.status();
        match (status, response.pdu()) {
            (CommandStatus::EsmeRok, Some(Pdu::SubmitSmResp(resp))) => {
                self.throttle.passed();
                Ok(resp.message_id().as_str().to_string())
            }
            (CommandStatus::EsmeRthrottled, _) => {
                let pause = self.throttle.hit();
                Err(GatewayError::RateLimited { retry_after: Some(pause) })
            }
            (CommandStatus::EsmeRmsgqful | CommandStatus::EsmeRsyserr, _) => {
                Err(GatewayError::Transient(status_name(status)))
            }
            (CommandStatus::EsmeRok, _) => {
                Err(GatewayError::Ambiguous(format!("answered {:?} instead of submit_sm_resp", response.id())))
            }
            _ => Err(GatewayError::Permanent(status_name(status))),
        }
    }

    /// The `submit_sm`s of one message: one per part with a concatenation header, or one with
    /// the whole text in `message_payload`.
    fn pdus(&self, sms: &OutboundSms<'_>) -> Result<Vec<SubmitSm>, GatewayError> {
        let segmented = sms::segment(sms.text);
        let refuse = |what: &str| GatewayError::Permanent(format!("cannot be sent over SMPP: {what}"));
        type Encode = fn(&str) -> Option<Vec<u8>>;
        let (coding, encode): (DataCoding, Encode) = match segmented.encoding {
            Encoding::Gsm7 => (DataCoding::McSpecific, |text| Gsm7BitUnpacked::new().encode_to_vec(text).ok()),
            // UTF-16BE, surrogate pairs and all, as §5.5 counts them (rusmpp's UCS-2 encoder
            // refuses characters outside the BMP).
            Encoding::Ucs2 => (DataCoding::Ucs2, |text| Some(text.encode_utf16().flat_map(u16::to_be_bytes).collect())),
        };
        let destination = sms.to.trim_start_matches('+');
        let template = SubmitSm::builder()
            .source_addr_ton(Ton::from(self.settings.source_ton))
            .source_addr_npi(Npi::from(self.settings.source_npi))
            .source_addr(COctetString::from_str(sms.from).map_err(|_| refuse("the sender port"))?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(COctetString::from_str(destination).map_err(|_| refuse("the number"))?)
            .registered_delivery(RegisteredDelivery::from(1u8))
            .data_coding(coding)
            .build();
        let text_of = |text: &str| encode(text).ok_or_else(|| refuse("a character outside the encoding"));
        if segmented.segments() == 1 {
            let short = OctetString::from_vec(text_of(sms.text)?).map_err(|_| refuse("the text's length"))?;
            return Ok(vec![template.with_short_message(short)]);
        }
        if self.settings.long == SmppLong::Payload {
            let mut pdu = template;
            let payload = AnyOctetString::from_vec(text_of(sms.text)?);
            pdu.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(payload)));
            return Ok(vec![pdu]);
        }
        let total = u8::try_from(segmented.segments()).map_err(|_| refuse("more than 255 parts"))?;
        let reference = self.next_reference();
        segmented
            .parts
            .iter()
            .zip(1..=total)
            .map(|(part, number)| {
                let header = ConcatenatedShortMessage8Bit::new(reference, total, number)
                    .map_err(|_| refuse("the concatenation header"))?;
                let mut bytes = header.udh_bytes().to_vec();
                bytes.extend(text_of(part)?);
                let short = OctetString::from_vec(bytes).map_err(|_| refuse("a part's length"))?;
                Ok(template.clone().with_udhi_indicator().with_short_message(short))
            })
            .collect()
    }
}

#[async_trait]
impl Gateway for SmppGateway {
    async fn send(&self, sms: &OutboundSms<'_>) -> Result<String, GatewayError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(GatewayError::Transient("the SMPP binds are closing".into()));
        }
        let pdus = self.pdus(sms)?;
        let total = pdus.len();
        let noting = if total == 1 { Noting::Whole } else { Noting::Part };
        let mut ids = Vec::with_capacity(total);
        let mut noted = Noting::Part;
        let mut on = None;
        for pdu in pdus {
            let mut tries = 0;
            let mut pdu = Some(pdu);
            let id = loop {
                tries += 1;
                // A first part is sent once here (a failure returns), later parts may be again.
                let attempt = if ids.is_empty() { pdu.take() } else { pdu.clone() };
                let attempt = attempt.expect("a part is kept while it may be sent again");
                match self.submit(&mut on, attempt, noting).await {
                    Ok((id, as_noted)) => {
                        noted = as_noted;
                        break id;
                    }
                    // Nothing is accepted yet: the whole message is the pusher's to retry.
                    Err(error) if ids.is_empty() => return Err(error),
                    // Later parts that certainly did not go are tried again here, so that
                    // the parts already accepted are not sent a second time.
                    Err(GatewayError::RateLimited { .. } | GatewayError::Transient(_)) if tries < PART_TRIES => {
                        tokio::time::sleep(crate::push::backoff(Duration::from_millis(200), i64::from(tries))).await;
                    }
                    // Some parts went and the rest cannot: never sent again, for the operator.
                    Err(error) => {
                        for answer in self.receipts.abandon(&ids) {
                            answer.ok_in_background();
                        }
                        return Err(GatewayError::Ambiguous(format!(
                            "{} of {total} parts accepted ({}), then: {error}",
                            ids.len(),
                            ids.join(" ")
                        )));
                    }
                }
            };
            ids.push(id);
        }
        if noted == Noting::Whole {
            // Followed since its response was read.
            return Ok(ids.swap_remove(0));
        }
        let (settled, due) = self.receipts.sent(&ids);
        for answer in due {
            answer.ok_in_background();
        }
        for (message_id, status, answer) in settled {
            let inbound = self.inbound.lock().expect("inbound lock").clone();
            match inbound {
                Some(inbound) => hand_over(&inbound, Inbound::Receipt { message_id, status, answer }).await,
                None => answer.later().await,
            }
        }
        Ok(ids.swap_remove(0))
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::NotHonoured
    }

    /// Stops sending, waits for the responses outstanding and for the receipts of what was sent
    /// (up to `smpp.receipt_wait`), then unbinds.
    async fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let window = u32::try_from(self.settings.window).unwrap_or(u32::MAX);
        // Every slot back means every response is in (or given up after the timeout).
        let all_back = futures_util::future::join_all(self.binds.iter().map(|bind| bind.window.acquire_many(window)));
        let _all = tokio::time::timeout(self.settings.timeout, all_back).await;
        let deadline = tokio::time::Instant::now() + self.settings.receipt_wait;
        self.receipts.wait_all(deadline).await;
        let outstanding = self.receipts.outstanding();
        if outstanding > 0 {
            tracing::info!(outstanding, "closing with receipts still to come; they settle through the SMSC's later deliveries or become unknown");
        }
        self.stop.cancel();
        self.inbound.lock().expect("inbound lock").take();
        let tasks: Vec<_> = self.tasks.lock().expect("tasks lock").drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The SMPP name of a command status, with its code: `ESME_RINVDSTADR (0x0000000B)`.
pub fn status_name(status: CommandStatus) -> String {
    let debug = format!("{status:?}");
    let name = match debug.strip_prefix("Esme") {
        Some(rest) => format!("ESME_{}", rest.to_ascii_uppercase()),
        None => debug.to_ascii_uppercase(),
    };
    format!("{name} (0x{:08X})", u32::from(status))
}

/// Keeps one bind up: connects, binds, reads what comes, reconnects with backoff.
struct BindKeeper {
    index: usize,
    settings: SmppSettings,
    bind: Arc<Bind>,
    receipts: Arc<Receipts>,
    replies: Arc<ReplyParts>,
    inbound: mpsc::UnboundedSender<Inbound>,
    stop: CancellationToken,
}

impl BindKeeper {
    async fn run(self, mut first: Option<oneshot::Sender<Result<(), SmppError>>>) {
        let mut failures = 0;
        while !self.stop.is_cancelled() {
            match self.open().await {
                Ok((link, events)) => {
                    if let Some(first) = first.take() {
                        let _ = first.send(Ok(()));
                    }
                    failures = 0;
                    tracing::info!(bind = self.index, host = %self.settings.host, "bound to the SMSC");
                    self.serve(link, events).await;
                }
                Err(BindFailure::Refused(status)) => {
                    if let Some(first) = first.take() {
                        let _ = first.send(Err(SmppError::BindRefused(status)));
                        return;
                    }
                    tracing::error!(bind = self.index, status, "the SMSC refused the bind");
                }
                Err(BindFailure::Unreachable(error)) => {
                    if let Some(first) = first.take() {
                        // Not fatal: the SMSC may come up later; sends wait for a bind meanwhile.
                        let _ = first.send(Ok(()));
                    }
                    tracing::warn!(bind = self.index, error, "cannot reach the SMSC");
                }
            }
            failures += 1;
            let wait = crate::push::backoff(RECONNECT_MIN, failures).min(RECONNECT_MAX);
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn open(&self) -> Result<(Link, mpsc::UnboundedReceiver<rusmppc::Event>), BindFailure> {
        let s = &self.settings;
        let builder = rusmppc::ConnectionBuilder::new()
            .disable_interface_version_check()
            .enquire_link_interval(ENQUIRE_LINK_EVERY)
            .enquire_link_response_timeout(s.timeout)
            .response_timeout(s.timeout);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (responses, receipts) = (pending.clone(), self.receipts.clone());
        let take = move |event| match event {
            rusmppc::Event::Incoming(response)
                if matches!(response.id(), CommandId::SubmitSmResp | CommandId::GenericNack) =>
            {
                Pending::route(&responses, response, |response, noting| {
                    // Noted before the sender sees it and before the next command is read, so
                    // that receipts for it, read later, find it.
                    if let (CommandStatus::EsmeRok, Some(Pdu::SubmitSmResp(resp))) = (response.status(), response.pdu())
                    {
                        match noting {
                            Noting::Part => receipts.accepted(resp.message_id().as_str()),
                            Noting::Whole => receipts.followed(resp.message_id().as_str()),
                        }
                    }
                });
                None
            }
            other => Some(other),
        };
        let connecting = connect(builder, &s.host, s.port, s.tls.clone(), take);
        let (client, events) = tokio::time::timeout(s.timeout, connecting)
            .await
            .map_err(|_| BindFailure::Unreachable("connect timed out".into()))?
            .map_err(|e| BindFailure::Unreachable(e.to_string()))?;
        // The configuration's checks keep these within SMPP's lengths.
        let unusable = |_| BindFailure::Refused("smpp.system_id, password or system_type unusable".into());
        let bind = BindTransceiver::builder()
            .system_id(COctetString::from_str(&s.system_id).map_err(unusable)?)
            .password(COctetString::from_str(&s.password).map_err(unusable)?)
            .system_type(COctetString::from_str(&s.system_type).map_err(unusable)?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .build();
        match client.bind_transceiver(bind).await {
            Ok(_) => Ok((Link { client, pending }, events)),
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                let _ = client.close().await;
                Err(BindFailure::Refused(status_name(response.status())))
            }
            Err(error) => {
                let _ = client.close().await;
                Err(BindFailure::Unreachable(error.to_string()))
            }
        }
    }

    /// Reads the bind until it closes or the gateway stops; then unbinds.
    async fn serve(&self, link: Link, mut events: mpsc::UnboundedReceiver<rusmppc::Event>) {
        let client = link.client.clone();
        self.bind.link.send_replace(Some(link.clone()));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    None => break,
                    Some(rusmppc::Event::Incoming(command)) => {
                        if !self.incoming(&link, command).await {
                            break;
                        }
                    }
                    Some(rusmppc::Event::Error(error)) => {
                        tracing::warn!(bind = self.index, %error, "SMPP bind error");
                    }
                },
                () = self.stop.cancelled() => {
                    self.bind.link.send_replace(None);
                    if let Err(error) = client.unbind().await {
                        tracing::info!(bind = self.index, %error, "unbind not answered");
                    }
                    let _ = client.close().await;
                    return;
                }
            }
        }
        // Lost: what waits for a response learns the bind is gone (ambiguous), nothing new
        // is written here.
        self.bind.link.send_replace(None);
        link.pending.lock().expect("pending lock").slots.clear();
        let _ = client.close().await;
        tracing::warn!(bind = self.index, "the SMSC connection closed; reconnecting");
    }

    /// Handles one command from the SMSC; `false` when the bind must close.
    async fn incoming(&self, link: &Link, command: Command) -> bool {
        let sequence = command.sequence_number();
        match command.id() {
            CommandId::DeliverSm => {
                let answer = Answer { to: vec![(link.client.clone(), sequence)], _owed: Owed::new(&self.receipts) };
                match command.pdu() {
                    Some(Pdu::DeliverSm(deliver)) => self.deliver(deliver, answer).await,
                    _ => answer.ok_in_background(),
                }
            }
            CommandId::Unbind => {
                let _ = link.client.unbind_resp(sequence).await;
                return false;
            }
            // Other requests (data_sm, query_sm, …) are not served on this bind.
            id if !id.is_response() => {
                let nack = link.client.status(CommandStatus::EsmeRinvcmdid).generic_nack(sequence);
                let _ = nack.await;
            }
            other => tracing::debug!(bind = self.index, ?other, "ignored"),
        }
        true
    }

    async fn deliver(&self, deliver: &DeliverSm, answer: Answer) {
        let esm_class = u8::from(deliver.esm_class);
        let payload = deliver.tlvs().iter().find_map(|tlv| match tlv.value() {
            Some(TlvValue::MessagePayload(payload)) => Some(payload.value.as_ref().to_vec()),
            _ => None,
        });
        let bytes = match &payload {
            Some(payload) if deliver.short_message().is_empty() => payload.clone(),
            _ => deliver.short_message().as_ref().to_vec(),
        };
        let coding = u8::from(deliver.data_coding);
        // Bits 2–5 say what kind of message this is: a receipt or acknowledgement, or a reply.
        if esm_class & 0x3C != 0 {
            return self.receipt(deliver, &bytes, coding, answer).await;
        }
        let (reassembly, body) = split_udh(esm_class, &bytes);
        let text = decode(coding, body);
        let from = deliver.source_addr.as_str().to_string();
        let (text, answer) = match reassembly {
            Some((reference, total, part)) => {
                let (joined, dropped) = self.replies.add(&from, reference, total, part, text, answer);
                for answer in dropped {
                    tokio::spawn(answer.later());
                }
                match joined {
                    Joined::Whole(text, answers) => {
                        let mut answers = answers.into_iter();
                        let first = answers.next().expect("a whole reply has a part");
                        (text, answers.fold(first, Answer::join))
                    }
                    Joined::Waiting => return,
                }
            }
            None => (text, answer),
        };
        let to = deliver.destination_addr.as_str().to_string();
        hand_over(&self.inbound, Inbound::Reply { from, to, text, answer }).await;
    }

    async fn receipt(&self, deliver: &DeliverSm, bytes: &[u8], coding: u8, answer: Answer) {
        let mut id = None;
        let mut state = None;
        for tlv in deliver.tlvs() {
            match tlv.value() {
                Some(TlvValue::ReceiptedMessageId(value)) => id = Some(value.as_str().to_string()),
                Some(TlvValue::MessageState(value)) => state = message_state_word(*value),
                _ => {}
            }
        }
        let text = decode(coding, bytes);
        if let Some((text_id, stat)) = parse_receipt_text(&text) {
            id.get_or_insert_with(|| text_id.to_string());
            if state.is_none() {
                state = stat.map(str::to_ascii_uppercase);
            }
        }
        let (Some(id), Some(status)) = (id, state.as_deref().and_then(receipt_status)) else {
            // Intermediate (ENROUTE, ACCEPTD) or unreadable: nothing to record.
            return answer.ok_in_background();
        };
        match self.receipts.receipt(&id, status, answer) {
            Settles::Message(message_id, status, answer) => {
                hand_over(&self.inbound, Inbound::Receipt { message_id, status, answer }).await;
            }
            Settles::NotYet(answer) => answer.ok_in_background(),
            Settles::Held => {}
        }
    }
}

/// Gives the application something to record; with nobody recording any more (closing), the
/// SMSC keeps it for later.
async fn hand_over(to: &mpsc::UnboundedSender<Inbound>, inbound: Inbound) {
    if let Err(mpsc::error::SendError(inbound)) = to.send(inbound) {
        match inbound {
            Inbound::Receipt { answer, .. } | Inbound::Reply { answer, .. } => answer.later().await,
        }
    }
}

enum BindFailure {
    Refused(String),
    Unreachable(String),
}

fn message_state_word(state: MessageState) -> Option<String> {
    Some(
        match state {
            MessageState::Delivered => "DELIVRD",
            MessageState::Expired => "EXPIRED",
            MessageState::Deleted => "DELETED",
            MessageState::Undeliverable => "UNDELIV",
            MessageState::Rejected => "REJECTD",
            _ => return None,
        }
        .to_string(),
    )
}

/// A concatenation header's (reference, total, part) when the UDHI bit says there is a
/// header, and the text after the header.
fn split_udh(esm_class: u8, bytes: &[u8]) -> (Option<(u16, u8, u8)>, &[u8]) {
    if esm_class & 0x40 == 0 || bytes.is_empty() {
        return (None, bytes);
    }
    let length = usize::from(bytes[0]);
    let Some(header) = bytes.get(1..=length) else { return (None, bytes) };
    let body = &bytes[length + 1..];
    // Information elements: 0x00 is the 8-bit reference form, 0x08 the 16-bit one.
    let mut rest = header;
    while let [id, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let Some(value) = tail.get(..len) else { break };
        match (id, value) {
            (0x00, [reference, total, part]) => return (Some((u16::from(*reference), *total, *part)), body),
            (0x08, [high, low, total, part]) => {
                return (Some((u16::from_be_bytes([*high, *low]), *total, *part)), body)
            }
            _ => {}
        }
        rest = &tail[len..];
    }
    (None, body)
}

/// A reply's text: UCS-2 as UTF-16BE, the SMSC's default alphabet (GSM 7-bit, one septet a
/// byte) otherwise; Latin-1 for `data_coding` 3.
fn decode(coding: u8, bytes: &[u8]) -> String {
    match coding {
        8 => {
            let units: Vec<u16> = bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        3 => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => sms::decode_gsm7(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the times a task asked to be polled again.
    struct Wakes(AtomicUsize);

    impl futures_util::task::ArcWake for Wakes {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_connection_that_wrote_is_polled_again_and_an_idle_one_is_not() {
        // Like rusmppc 0.4's connection with requests queued: each poll writes one and
        // returns without arranging to be woken; with none queued it writes nothing.
        let wrote = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(3));
        let (counter, left) = (wrote.clone(), queued.clone());
        let connection = std::future::poll_fn(move |_| {
            if left.load(Ordering::Relaxed) > 0 {
                left.fetch_sub(1, Ordering::Relaxed);
                counter.fetch_add(80, Ordering::Relaxed);
            }
            std::task::Poll::Pending
        });
        let (forward, _left) = mpsc::unbounded_channel();
        let events = futures_util::stream::pending::<rusmppc::Event>();
        let mut driver = Driver { connection: Box::pin(connection), events, take: Some, forward, wrote: wrote.clone() };
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut polls = 0;
        // Each wake is a poll the runtime would make.
        loop {
            let before = wakes.0.load(Ordering::Relaxed);
            assert!(std::future::Future::poll(std::pin::Pin::new(&mut driver), &mut cx).is_pending());
            polls += 1;
            if wakes.0.load(Ordering::Relaxed) == before {
                break;
            }
        }
        assert_eq!(queued.load(Ordering::Relaxed), 0, "every queued request was written");
        assert_eq!(wrote.load(Ordering::Relaxed), 240);
        assert_eq!(polls, 4, "three polls that wrote, then one that found nothing and waits");
    }

    #[test]
    fn what_the_connection_read_is_taken_in_its_own_poll_and_the_rest_forwarded() {
        let command = |sequence| {
            Command::builder().status(CommandStatus::EsmeRok).sequence_number(sequence).pdu(Pdu::EnquireLinkResp)
        };
        let events = futures_util::stream::iter([1, 2, 3].map(|n| rusmppc::Event::Incoming(command(n))))
            .chain(futures_util::stream::pending());
        let taken = Arc::new(Mutex::new(Vec::new()));
        let seen = taken.clone();
        let take = move |event: rusmppc::Event| match event {
            rusmppc::Event::Incoming(command) if command.sequence_number() % 2 == 1 => {
                seen.lock().unwrap().push(command.sequence_number());
                None
            }
            other => Some(other),
        };
        let (forward, mut left) = mpsc::unbounded_channel();
        let connection = std::future::pending::<()>();
        let mut driver = Driver { connection: Box::pin(connection), events, take, forward, wrote: Arc::default() };
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::future::Future::poll(std::pin::Pin::new(&mut driver), &mut cx).is_pending());
        assert_eq!(*taken.lock().unwrap(), vec![1, 3]);
        match left.try_recv() {
            Ok(rusmppc::Event::Incoming(command)) => assert_eq!(command.sequence_number(), 2),
            other => panic!("the rest is forwarded: {other:?}"),
        }
        assert!(left.try_recv().is_err());
    }

    #[test]
    fn status_names_read_as_in_the_specification() {
        assert_eq!(status_name(CommandStatus::EsmeRinvdstadr), "ESME_RINVDSTADR (0x0000000B)");
        assert_eq!(status_name(CommandStatus::EsmeRthrottled), "ESME_RTHROTTLED (0x00000058)");
    }

    #[test]
    fn a_long_message_is_settled_by_all_its_parts_or_the_first_failed_one() {
        use DeliveryStatus::{Delivered, Undeliverable};
        let receipts: Receipts<u32> = Receipts::default();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for id in ["a", "b", "c", "x", "y", "s"] {
            receipts.accepted(id);
        }
        // A receipt before its message was sent whole waits for it, unanswered.
        assert_eq!(receipts.receipt("b", Delivered, 1), Settles::Held);
        assert_eq!(receipts.sent(&ids(&["a", "b", "c"])), (vec![], vec![1]));
        assert_eq!(receipts.sent(&ids(&["x", "y"])), (vec![], vec![]));
        assert_eq!(receipts.sent(&ids(&["s"])), (vec![], vec![]));
        assert_eq!(receipts.receipt("a", Delivered, 2), Settles::NotYet(2));
        assert_eq!(receipts.receipt("c", Delivered, 3), Settles::Message("a".into(), Delivered, 3));
        assert_eq!(receipts.receipt("y", Undeliverable, 4), Settles::Message("x".into(), Undeliverable, 4));
        // A part's receipt after another part settled its message says nothing more; a receipt
        // for an id never sent here is passed on as it is.
        assert_eq!(receipts.receipt("x", Delivered, 5), Settles::NotYet(5));
        assert_eq!(receipts.receipt("q", Delivered, 9), Settles::Message("q".into(), Delivered, 9));
        assert_eq!(receipts.outstanding(), 1);
        assert_eq!(receipts.receipt("s", Delivered, 6), Settles::Message("s".into(), Delivered, 6));
        assert_eq!(receipts.outstanding(), 0);
        // Early receipts that settle a message settle it as it is sent; an abandoned message's
        // held receipts are only answered.
        receipts.accepted("m");
        receipts.accepted("n");
        assert_eq!(receipts.receipt("m", Undeliverable, 7), Settles::Held);
        assert_eq!(receipts.sent(&ids(&["m"])), (vec![("m".into(), Undeliverable, 7)], vec![]));
        assert_eq!(receipts.receipt("n", Delivered, 8), Settles::Held);
        assert_eq!(receipts.abandon(&ids(&["n"])), vec![8]);
    }

    #[test]
    fn parts_given_one_id_are_waited_for_once_and_delivered_parts_are_forgotten() {
        use DeliveryStatus::Delivered;
        let receipts: Receipts<u32> = Receipts::default();
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for id in ["a", "b"] {
            receipts.accepted(id);
        }
        assert_eq!(receipts.sent(&ids(&["a", "a", "b", "b"])), (vec![], vec![]));
        assert_eq!(receipts.receipt("b", Delivered, 1), Settles::NotYet(1));
        // A delivered later part leaves nothing behind but the note that it says no more.
        assert!(receipts.state.lock().unwrap().part_of.is_empty());
        assert_eq!(receipts.receipt("b", Delivered, 2), Settles::NotYet(2));
        assert_eq!(receipts.receipt("a", Delivered, 3), Settles::Message("a".into(), Delivered, 3));
        assert_eq!(receipts.outstanding(), 0);
    }

    #[test]
    fn a_message_of_one_part_is_followed_from_its_response() {
        use DeliveryStatus::{Delivered, Undeliverable};
        let receipts: Receipts<u32> = Receipts::default();
        receipts.followed("w");
        receipts.followed("v");
        assert_eq!(receipts.outstanding(), 2);
        assert_eq!(receipts.receipt("w", Delivered, 1), Settles::Message("w".into(), Delivered, 1));
        assert_eq!(receipts.receipt("v", Undeliverable, 2), Settles::Message("v".into(), Undeliverable, 2));
        assert_eq!(receipts.outstanding(), 0);
        // A second receipt for a settled message is passed on as one never sent here.
        assert_eq!(receipts.receipt("w", Delivered, 3), Settles::Message("w".into(), Delivered, 3));
    }

    #[test]
    fn a_response_is_noted_as_its_sender_asked_unless_it_came_first() {
        let response = |sequence| {
            let resp = rusmpp::pdus::SubmitSmResp::builder().message_id(COctetString::from_str("m").unwrap()).build();
            Command::builder().status(CommandStatus::EsmeRok).sequence_number(sequence).pdu(Pdu::SubmitSmResp(resp))
        };
        let pending = Mutex::new(Pending::default());
        let notes = Mutex::new(Vec::new());
        let note = |command: &Command, noting| notes.lock().unwrap().push((command.sequence_number(), noting));
        // Registered first: noted as asked, and the sender is told so.
        let mut whole = Pending::wait_for(&pending, 1, Noting::Whole);
        Pending::route(&pending, response(1), note);
        assert_eq!(whole.try_recv().map(|(c, n)| (c.sequence_number(), n)).ok(), Some((1, Noting::Whole)));
        // Came before its sender registered: noted as a part, and the sender is told so.
        Pending::route(&pending, response(2), note);
        let mut early = Pending::wait_for(&pending, 2, Noting::Whole);
        assert_eq!(early.try_recv().map(|(c, n)| (c.sequence_number(), n)).ok(), Some((2, Noting::Part)));
        // Given up on: a late response is not noted at all.
        let _late = Pending::wait_for(&pending, 3, Noting::Whole);
        assert!(Pending::give_up(&pending, 3).is_none());
        Pending::route(&pending, response(3), note);
        assert_eq!(*notes.lock().unwrap(), vec![(1, Noting::Whole), (2, Noting::Part)]);
        // Routed just before its sender gave up: the sender finds it in its channel, and the
        // sequence number is not kept as given up.
        let mut raced = Pending::wait_for(&pending, 4, Noting::Whole);
        Pending::route(&pending, response(4), note);
        assert!(Pending::give_up(&pending, 4).is_none());
        assert_eq!(raced.try_recv().map(|(c, n)| (c.sequence_number(), n)).ok(), Some((4, Noting::Whole)));
        assert!(pending.lock().unwrap().given_up.is_empty());
    }

    #[test]
    fn reply_parts_are_joined_in_order_and_answered_together() {
        let parts: ReplyParts<u32> = ReplyParts::default();
        assert_eq!(parts.add("8613800138000", 7, 2, 2, "世界".into(), 1), (Joined::Waiting, vec![]));
        assert_eq!(parts.add("8613900139000", 7, 2, 1, "other".into(), 2), (Joined::Waiting, vec![]));
        assert_eq!(
            parts.add("8613800138000", 7, 2, 1, "SS 你好".into(), 3),
            (Joined::Whole("SS 你好世界".into(), vec![3, 1]), vec![])
        );
        // A part that does not fit its reference's count is a text of its own; the parts
        // before it are dropped unanswered, for the SMSC to deliver again.
        assert_eq!(
            parts.add("8613900139000", 7, 3, 1, "odd".into(), 4),
            (Joined::Whole("odd".into(), vec![4]), vec![2])
        );
    }

    #[test]
    fn concatenation_headers_are_read_in_both_forms() {
        assert_eq!(split_udh(0x40, &[5, 0x00, 3, 9, 2, 1, b'h', b'i']), (Some((9, 2, 1)), &b"hi"[..]));
        assert_eq!(split_udh(0x40, &[6, 0x08, 4, 1, 2, 3, 2, b'h']), (Some((0x0102, 3, 2)), &b"h"[..]));
        assert_eq!(split_udh(0x00, &[5, 0x00, 3, 9, 2, 1]), (None, &[5, 0x00, 3, 9, 2, 1][..]));
        assert_eq!(split_udh(0x40, &[9, 0x00]), (None, &[9, 0x00][..]));
    }

    #[test]
    fn replies_are_decoded_by_their_data_coding() {
        assert_eq!(decode(8, &[0x90, 0x00, 0x8b, 0xa2]), "退订");
        assert_eq!(decode(0, b"TDZD"), "TDZD");
        assert_eq!(decode(0, &[0x1b, 0x65, 0x00]), "€@");
    }
}
