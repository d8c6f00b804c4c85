//! A test SMSC: an SMPP 3.4 server for the SMPP gateway's integration tests and benchmark. It
//! binds transceivers, answers `submit_sm` as scripted (accept, refuse with a status, stay
//! silent, or drop the connection), can hold its answers back so a client's window fills,
//! sends delivery receipts and subscribers' replies as `deliver_sm`, and records everything so
//! a test can assert on what the client really sent. PDUs are rusmpp's types over its tokio
//! codec; nothing here encodes bytes by hand.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use rusmpp::command::CommandParts;
use rusmpp::pdus::{BindTransceiver, BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::tokio_codec::{CommandCodec, DecodeError, EncodeError};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, MessagePayload, MessageState, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The system_id the SMSC names itself with in `bind_transceiver_resp`.
const SMSC_SYSTEM_ID: &str = "TESTSMSC";
/// The first message id handed out; ids are this counter in hex, so every id has four digits
/// or more and none is a short one like "1" that prefixes many others.
const FIRST_MESSAGE_ID: u64 = 0x1000;
/// Commands answered per write at most: bounds the memory a fast client can make one batch take.
const WRITE_BATCH: usize = 512;
/// The largest text sent as `short_message`; a longer reply goes in `message_payload`.
const MAX_SHORT_MESSAGE: usize = 254;

/// Who may bind, and how the SMSC serves.
#[derive(Debug)]
pub struct SmscConfig {
    pub system_id: String,
    pub password: String,
    /// Send a delivery receipt after each accepted `submit_sm`.
    pub receipts: bool,
    /// Serve SMPP over TLS (`smpps://`) with this certificate chain and key.
    pub tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

// By hand because rustls' private key type is deliberately not `Clone`.
impl Clone for SmscConfig {
    fn clone(&self) -> Self {
        SmscConfig {
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            receipts: self.receipts,
            tls: self.tls.as_ref().map(|(chain, key)| (chain.clone(), key.clone_key())),
        }
    }
}

impl Default for SmscConfig {
    fn default() -> Self {
        SmscConfig { system_id: "billpush".into(), password: "secret".into(), receipts: true, tls: None }
    }
}

/// What the SMSC answers to the next `submit_sm`(s); scripted answers are consumed in order,
/// then `Ok` forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `submit_sm_resp` OK with a fresh message id (held back while `hold` is on).
    Ok,
    /// `submit_sm_resp` with this command status and an empty message id.
    Status(CommandStatus),
    /// Never answer this one.
    NoResponse,
    /// Close the TCP connection instead of answering.
    Drop,
}

/// One `submit_sm` as the SMSC received it.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Which connection it came on, counted from 1 in order of acceptance.
    pub connection: u64,
    pub sequence: u32,
    pub source: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub destination: String,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub short_message: Vec<u8>,
    pub message_payload: Option<Vec<u8>>,
    /// Some when the answer is `Ok`, already while that answer is held back.
    pub message_id: Option<String>,
    /// When it was read, to see a client's pauses.
    pub received: std::time::Instant,
}

/// The test SMSC; dropping it stops listening and closes every connection.
pub struct TestSmsc {
    shared: Arc<Shared>,
    port: u16,
    stop: CancellationToken,
}

struct Shared {
    system_id: String,
    password: String,
    receipts: bool,
    /// Built once: the SMSC's own name, so answering a bind cannot fail.
    smsc_system_id: COctetString<1, 16>,
    state: Mutex<State>,
    /// Counters touched per message by every connection; atomics keep them off the lock.
    receipts_sent: AtomicU64,
    receipts_acknowledged: AtomicU64,
    /// Bumped on every change a `wait_*` may be waiting for.
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    hold: bool,
    held: Vec<Held>,
    peak_outstanding: usize,
    submitted: Vec<Submitted>,
    next_message_id: u64,
    binds: u64,
    unbinds: u64,
    connections: HashMap<u64, Peer>,
    receipt_stats: HashMap<String, &'static str>,
    /// Spreads subscribers' replies over the bound connections in turn.
    next_mo: usize,
}

/// The SMSC's handle on one connection's task.
struct Peer {
    control: mpsc::UnboundedSender<Control>,
    bound: bool,
}

/// What the rest of the SMSC asks of a connection's task, which alone writes to its socket.
enum Control {
    Close,
    /// Ok answers that were held back, to send now.
    Release(Vec<Accepted>),
    /// A subscriber's reply; the sender learns whether it was written.
    Deliver(Box<DeliverSm>, oneshot::Sender<io::Result<()>>),
}

/// An Ok answer to one `submit_sm`, sent at once or when released.
struct Accepted {
    sequence: u32,
    message_id: String,
    receipt: Option<Receipt>,
}

struct Held {
    connection: u64,
    answer: Accepted,
}

/// The delivery receipt due after an Ok answer: from the submit's destination to its source.
struct Receipt {
    source: COctetString<1, 21>,
    source_ton: Ton,
    source_npi: Npi,
    destination: COctetString<1, 21>,
    destination_ton: Ton,
    destination_npi: Npi,
    stat: &'static str,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("smsc state lock")
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn forget(&self, connection: u64) {
        let removed = self.state().connections.remove(&connection).is_some();
        if removed {
            self.notify();
        }
    }
}

impl TestSmsc {
    /// Listens on 127.0.0.1 with a port of the system's choosing.
    pub async fn start(config: SmscConfig) -> io::Result<TestSmsc> {
        let acceptor = match &config.tls {
            Some((chain, key)) => Some(tls_acceptor(chain.clone(), key.clone_key())?),
            None => None,
        };
        let smsc_system_id =
            COctetString::from_str(SMSC_SYSTEM_ID).map_err(|e| io::Error::other(format!("smsc system_id: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            system_id: config.system_id,
            password: config.password,
            receipts: config.receipts,
            smsc_system_id,
            state: Mutex::new(State { next_message_id: FIRST_MESSAGE_ID, ..State::default() }),
            receipts_sent: AtomicU64::new(0),
            receipts_acknowledged: AtomicU64::new(0),
            changed: watch::Sender::new(()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), acceptor, stop.clone()));
        Ok(TestSmsc { shared, port, stop })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Appends to the scripted answers.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.state().script.extend(answers);
    }

    /// While on, Ok answers are held back so a client's window fills; turning it off sends the
    /// held ones.
    pub fn hold(&self, on: bool) {
        let mut state = self.shared.state();
        state.hold = on;
        if on {
            return;
        }
        // Flipped under the same lock a submit's answer is decided under, so no answer is
        // held after this and none stays behind.
        let mut by_connection: HashMap<u64, Vec<Accepted>> = HashMap::new();
        for held in state.held.drain(..) {
            by_connection.entry(held.connection).or_default().push(held.answer);
        }
        for (connection, answers) in by_connection {
            // A connection gone since has nobody left to answer.
            if let Some(peer) = state.connections.get(&connection) {
                let _ = peer.control.send(Control::Release(answers));
            }
        }
        drop(state);
        self.shared.notify();
    }

    /// Answers held back right now.
    pub fn held(&self) -> usize {
        self.shared.state().held.len()
    }

    pub async fn wait_held(&self, n: usize) {
        self.wait_until(|shared| shared.state().held.len() >= n).await
    }

    /// The most `submit_sm` on one connection that were received and not yet answered at the
    /// same time; held and unanswered ones count, refused ones until their answer is queued.
    pub fn peak_outstanding(&self) -> usize {
        self.shared.state().peak_outstanding
    }

    pub fn submitted(&self) -> Vec<Submitted> {
        self.shared.state().submitted.clone()
    }

    pub async fn wait_submitted(&self, n: usize) {
        self.wait_until(|shared| shared.state().submitted.len() >= n).await
    }

    /// Successful `bind_transceiver`s, in total.
    pub fn binds(&self) -> u64 {
        self.shared.state().binds
    }

    /// Connections bound right now.
    pub fn bound(&self) -> usize {
        self.shared.state().connections.values().filter(|peer| peer.bound).count()
    }

    pub async fn wait_bound(&self, n: usize) {
        self.wait_until(|shared| shared.state().connections.values().filter(|peer| peer.bound).count() >= n).await
    }

    /// `unbind` requests received; each was answered, then its connection closed.
    pub fn unbinds(&self) -> u64 {
        self.shared.state().unbinds
    }

    /// Closes every current connection at once; the client must reconnect. They stop counting
    /// as bound immediately.
    pub fn drop_connections(&self) {
        let peers: Vec<Peer> = self.shared.state().connections.drain().map(|(_, peer)| peer).collect();
        for peer in peers {
            let _ = peer.control.send(Control::Close);
        }
        self.shared.notify();
    }

    /// A subscriber's reply as `deliver_sm` (esm_class 0) on one bound connection, bound
    /// connections taken in turn: data_coding 0 with the text's bytes when it is ASCII, else
    /// data_coding 8 with UTF-16BE; longer than 254 octets it goes in `message_payload`.
    /// Resolves once written.
    pub async fn send_mo(&self, from: &str, to: &str, text: &str) -> io::Result<()> {
        let deliver = subscriber_reply(from, to, text)?;
        let (written, outcome) = oneshot::channel();
        {
            let mut state = self.shared.state();
            let mut bound: Vec<u64> =
                state.connections.iter().filter(|(_, peer)| peer.bound).map(|(id, _)| *id).collect();
            if bound.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "no bound connection to send the reply on"));
            }
            bound.sort_unstable();
            let connection = bound[state.next_mo % bound.len()];
            state.next_mo += 1;
            let sent = state
                .connections
                .get(&connection)
                .map(|peer| peer.control.send(Control::Deliver(Box::new(deliver), written)).is_ok());
            if sent != Some(true) {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the connection closed"));
            }
        }
        outcome.await.map_err(|_| {
            io::Error::new(io::ErrorKind::ConnectionAborted, "the connection closed before the reply was sent")
        })?
    }

    pub fn receipts_sent(&self) -> u64 {
        self.shared.receipts_sent.load(Ordering::Relaxed)
    }

    /// `deliver_sm_resp` received for receipts and subscribers' replies, whatever their status.
    pub fn receipts_acknowledged(&self) -> u64 {
        self.shared.receipts_acknowledged.load(Ordering::Relaxed)
    }

    /// The receipts' `stat` for messages to `destination` from now on, e.g. "UNDELIV"; the
    /// default is "DELIVRD".
    pub fn set_receipt_stat(&self, destination: &str, stat: &'static str) {
        self.shared.state().receipt_stats.insert(destination.to_string(), stat);
    }

    pub async fn wait_receipts_acknowledged(&self, n: u64) {
        self.wait_until(|shared| shared.receipts_acknowledged.load(Ordering::Relaxed) >= n).await
    }

    async fn wait_until(&self, done: impl Fn(&Shared) -> bool) {
        // Subscribed before the first look, so a change between the look and the wait still
        // wakes it.
        let mut changed = self.shared.changed.subscribe();
        while !done(&self.shared) {
            // The sender lives in `shared`, which `self` keeps alive: this never errs.
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for TestSmsc {
    fn drop(&mut self) {
        // The listener and every connection's task end on this.
        self.stop.cancel();
    }
}

fn tls_acceptor(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> io::Result<TlsAcceptor> {
    // rustls' process-wide provider: ring, the only one compiled in, as for the HTTPS listener.
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>, stop: CancellationToken) {
    let mut next_connection = 1u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: back off a little rather than spin.
                    tracing::warn!(%error, "test smsc could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Small PDUs answered one by one: Nagle's delay would dominate the round trip.
        let _ = stream.set_nodelay(true);
        let connection = next_connection;
        next_connection += 1;
        let (control, commands) = mpsc::unbounded_channel();
        // Registered before the handshake so `drop_connections` reaches it too.
        shared.state().connections.insert(connection, Peer { control, bound: false });
        tracing::debug!(connection, %peer, "test smsc accepted a connection");
        let shared = shared.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(&shared, connection, stream, commands, stop).await,
                // A client that never finishes its handshake must not outlive the SMSC.
                Some(tls) => match stop.run_until_cancelled(tls.accept(stream)).await {
                    Some(Ok(stream)) => serve(&shared, connection, stream, commands, stop).await,
                    Some(Err(error)) => tracing::warn!(connection, %error, "test smsc: TLS handshake failed"),
                    None => {}
                },
            }
            shared.forget(connection);
        });
    }
}

/// What becomes of one `submit_sm`, decided under the state's lock.
enum Decision {
    Accept(Accepted),
    Held,
    Refuse(CommandStatus),
    Silent,
    Drop,
}

/// Whether a connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// One connection's task: reads commands, answers them, and writes what the rest of the SMSC
/// hands it, all through one `Framed`.
async fn serve<S>(
    shared: &Shared,
    connection: u64,
    stream: S,
    mut commands: mpsc::UnboundedReceiver<Control>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, CommandCodec::new());
    let mut session = Session::new(shared, connection);
    let mut written: Vec<oneshot::Sender<io::Result<()>>> = Vec::new();
    loop {
        let mut flow = tokio::select! {
            biased;
            _ = stop.cancelled() => Flow::Close,
            command = commands.recv() => match command {
                None | Some(Control::Close) => Flow::Close,
                Some(Control::Release(answers)) => {
                    answers.into_iter().for_each(|answer| session.accept(answer));
                    Flow::Continue
                }
                Some(Control::Deliver(deliver, done)) => {
                    session.deliver(*deliver);
                    written.push(done);
                    Flow::Continue
                }
            },
            read = framed.next() => session.read(read),
        };
        // Everything already readable is answered before writing, so a burst of submit_sm
        // costs one write rather than one per PDU.
        while flow == Flow::Continue && session.out.len() < WRITE_BATCH {
            match framed.next().now_or_never() {
                Some(read) => flow = session.read(read),
                None => break,
            }
        }
        let result = write(&mut framed, &mut session.out).await;
        for done in written.drain(..) {
            let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| io::Error::other(e.to_string())));
        }
        if let Err(error) = result {
            tracing::debug!(connection, %error, "test smsc could not write; closing the connection");
            break;
        }
        if flow == Flow::Close {
            break;
        }
    }
    tracing::debug!(connection, "test smsc closed a connection");
}

async fn write<S>(framed: &mut Framed<S, CommandCodec>, out: &mut Vec<Command>) -> Result<(), EncodeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if out.is_empty() {
        return Ok(());
    }
    for command in out.drain(..) {
        framed.feed(command).await?;
    }
    SinkExt::<Command>::flush(framed).await
}

/// A connection's protocol state; answers are queued in `out` for the task to write.
struct Session<'a> {
    shared: &'a Shared,
    connection: u64,
    bound: bool,
    /// submit_sm received and not answered yet.
    outstanding: usize,
    next_sequence: u32,
    /// Sequence numbers of the deliver_sm sent and not acknowledged yet.
    unacknowledged: HashSet<u32>,
    out: Vec<Command>,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, connection: u64) -> Session<'a> {
        Session {
            shared,
            connection,
            bound: false,
            outstanding: 0,
            next_sequence: 1,
            unacknowledged: HashSet::new(),
            out: Vec::new(),
        }
    }

    fn read(&mut self, read: Option<Result<Command, DecodeError>>) -> Flow {
        match read {
            Some(Ok(command)) => self.handle(command),
            Some(Err(error)) => {
                tracing::warn!(connection = self.connection, %error, "test smsc got a malformed PDU; closing the connection");
                Flow::Close
            }
            None => Flow::Close,
        }
    }

    fn handle(&mut self, command: Command) -> Flow {
        let (id, _status, sequence, pdu) = command.into_parts().raw();
        match (id, pdu) {
            (CommandId::BindTransceiver, Some(Pdu::BindTransceiver(bind))) => self.bind(sequence, &bind),
            (CommandId::BindTransmitter | CommandId::BindReceiver | CommandId::BindTransceiver, _) => {
                // Only transceivers are served: the gateway sends and receives on one session.
                let status = if self.bound { CommandStatus::EsmeRalybnd } else { CommandStatus::EsmeRbindfail };
                self.header_only(id.matching_response(), status, sequence);
                Flow::Continue
            }
            (CommandId::EnquireLink, _) => {
                self.out.push(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp));
                Flow::Continue
            }
            (CommandId::Unbind, _) => {
                self.shared.state().unbinds += 1;
                self.shared.notify();
                self.out.push(Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp));
                Flow::Close
            }
            (CommandId::DeliverSmResp, _) => {
                if self.unacknowledged.remove(&sequence) {
                    self.shared.receipts_acknowledged.fetch_add(1, Ordering::Relaxed);
                    self.shared.notify();
                }
                Flow::Continue
            }
            (CommandId::SubmitSm, Some(Pdu::SubmitSm(submit))) if self.bound => self.submit(sequence, submit),
            // enquire_link_resp, generic_nack and the like need no answer.
            (id, _) if id.is_response() => Flow::Continue,
            (_, _) if !self.bound => {
                self.header_only(CommandId::GenericNack, CommandStatus::EsmeRinvbndsts, sequence);
                Flow::Continue
            }
            (CommandId::SubmitSm, None) => {
                self.header_only(CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen, sequence);
                Flow::Continue
            }
            (_, _) => {
                self.header_only(CommandId::GenericNack, CommandStatus::EsmeRinvcmdid, sequence);
                Flow::Continue
            }
        }
    }

    /// An answer without a body, as SMPP 3.4 has error answers to binds.
    fn header_only(&mut self, id: CommandId, status: CommandStatus, sequence: u32) {
        self.out.push(Command::from_parts(CommandParts::new(id, status, sequence, None)));
    }

    fn bind(&mut self, sequence: u32, bind: &BindTransceiver) -> Flow {
        if self.bound {
            self.header_only(CommandId::BindTransceiverResp, CommandStatus::EsmeRalybnd, sequence);
            return Flow::Continue;
        }
        if bind.system_id.as_str() != self.shared.system_id || bind.password.as_str() != self.shared.password {
            tracing::debug!(
                connection = self.connection,
                system_id = bind.system_id.as_str(),
                "test smsc refused a bind"
            );
            self.header_only(CommandId::BindTransceiverResp, CommandStatus::EsmeRbindfail, sequence);
            return Flow::Continue;
        }
        {
            let mut state = self.shared.state();
            match state.connections.get_mut(&self.connection) {
                Some(peer) => peer.bound = true,
                // Dropped by `drop_connections` meanwhile: the close is on its way.
                None => return Flow::Close,
            }
            state.binds += 1;
        }
        self.bound = true;
        self.shared.notify();
        let resp = BindTransceiverResp::new(self.shared.smsc_system_id.clone(), Some(InterfaceVersion::Smpp3_4));
        self.out.push(Command::new(CommandStatus::EsmeRok, sequence, resp));
        Flow::Continue
    }

    fn submit(&mut self, sequence: u32, submit: SubmitSm) -> Flow {
        self.outstanding += 1;
        let message_payload = submit.tlvs().iter().find_map(|tlv| match tlv.value() {
            Some(TlvValue::MessagePayload(payload)) => Some(payload.value.to_vec()),
            _ => None,
        });
        let mut record = Submitted {
            connection: self.connection,
            sequence,
            source: submit.source_addr.as_str().to_string(),
            source_ton: submit.source_addr_ton.into(),
            source_npi: submit.source_addr_npi.into(),
            destination: submit.destination_addr.as_str().to_string(),
            esm_class: submit.esm_class.into(),
            data_coding: submit.data_coding.into(),
            registered_delivery: submit.registered_delivery.into(),
            short_message: submit.short_message().to_vec(),
            message_payload,
            message_id: None,
            received: std::time::Instant::now(),
        };
        let decision = {
            let mut state = self.shared.state();
            state.peak_outstanding = state.peak_outstanding.max(self.outstanding);
            let answer = state.script.pop_front().unwrap_or(Answer::Ok);
            let decision = match answer {
                Answer::Ok => {
                    let message_id = format!("{:x}", state.next_message_id);
                    state.next_message_id += 1;
                    record.message_id = Some(message_id.clone());
                    let receipt = self.shared.receipts.then(|| Receipt {
                        source: submit.destination_addr.clone(),
                        source_ton: submit.dest_addr_ton,
                        source_npi: submit.dest_addr_npi,
                        destination: submit.source_addr.clone(),
                        destination_ton: submit.source_addr_ton,
                        destination_npi: submit.source_addr_npi,
                        stat: state.receipt_stats.get(&record.destination).copied().unwrap_or("DELIVRD"),
                    });
                    let accepted = Accepted { sequence, message_id, receipt };
                    if state.hold {
                        state.held.push(Held { connection: self.connection, answer: accepted });
                        Decision::Held
                    } else {
                        Decision::Accept(accepted)
                    }
                }
                Answer::Status(status) => Decision::Refuse(status),
                Answer::NoResponse => Decision::Silent,
                Answer::Drop => Decision::Drop,
            };
            state.submitted.push(record);
            decision
        };
        self.shared.notify();
        match decision {
            Decision::Accept(accepted) => self.accept(accepted),
            Decision::Refuse(status) => {
                self.outstanding -= 1;
                let resp = SubmitSmResp::new(COctetString::empty(), Vec::new());
                self.out.push(Command::new(status, sequence, resp));
            }
            Decision::Held | Decision::Silent => {}
            Decision::Drop => return Flow::Close,
        }
        Flow::Continue
    }

    /// Queues an Ok answer and, when receipts are on, its receipt right behind it.
    fn accept(&mut self, accepted: Accepted) {
        self.outstanding = self.outstanding.saturating_sub(1);
        let message_id = match COctetString::from_str(&accepted.message_id) {
            Ok(message_id) => message_id,
            Err(error) => {
                tracing::error!(%error, "test smsc made a message id it cannot send");
                return;
            }
        };
        let resp = SubmitSmResp::new(message_id, Vec::new());
        self.out.push(Command::new(CommandStatus::EsmeRok, accepted.sequence, resp));
        if let Some(receipt) = accepted.receipt {
            match delivery_receipt(&accepted.message_id, receipt) {
                Some(deliver) => {
                    self.deliver(deliver);
                    self.shared.receipts_sent.fetch_add(1, Ordering::Relaxed);
                }
                None => tracing::error!(message_id = accepted.message_id, "test smsc could not build a receipt"),
            }
        }
    }

    fn deliver(&mut self, deliver: DeliverSm) {
        let sequence = self.next_sequence;
        // SMPP sequence numbers run from 1 to 0x7FFFFFFF.
        self.next_sequence = if sequence >= 0x7FFF_FFFF { 1 } else { sequence + 1 };
        self.unacknowledged.insert(sequence);
        self.out.push(Command::new(CommandStatus::EsmeRok, sequence, deliver));
    }
}

/// The standard receipt text and TLVs for `message_id`; None only if a field overflows, which
/// the SMSC's own ids and the submit's valid addresses cannot.
fn delivery_receipt(message_id: &str, receipt: Receipt) -> Option<DeliverSm> {
    let delivered = receipt.stat == "DELIVRD";
    let (dlvrd, err) = if delivered { ("001", "000") } else { ("000", "001") };
    let text = format!(
        "id:{message_id} sub:001 dlvrd:{dlvrd} submit date:2610010000 done date:2610010000 stat:{} err:{err} text:",
        receipt.stat
    );
    let state = match receipt.stat {
        "DELIVRD" => MessageState::Delivered,
        "EXPIRED" => MessageState::Expired,
        "DELETED" => MessageState::Deleted,
        "ACCEPTD" => MessageState::Accepted,
        "REJECTD" => MessageState::Rejected,
        "ENROUTE" => MessageState::Enroute,
        "UNKNOWN" => MessageState::Unknown,
        _ => MessageState::Undeliverable,
    };
    Some(
        DeliverSm::builder()
            .source_addr_ton(receipt.source_ton)
            .source_addr_npi(receipt.source_npi)
            .source_addr(receipt.source)
            .dest_addr_ton(receipt.destination_ton)
            .dest_addr_npi(receipt.destination_npi)
            .destination_addr(receipt.destination)
            // SMSC delivery receipt.
            .esm_class(EsmClass::from(0x04))
            .data_coding(DataCoding::McSpecific)
            .short_message(OctetString::from_vec(text.into_bytes()).ok()?)
            .tlvs(vec![
                MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_str(message_id).ok()?),
                MessageDeliveryRequestTlvValue::MessageState(state),
            ])
            .build(),
    )
}

/// A subscriber's reply from `from` to `to`.
fn subscriber_reply(from: &str, to: &str, text: &str) -> io::Result<DeliverSm> {
    let address = |address: &str| {
        COctetString::<1, 21>::from_str(address)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address {address:?}: {e}")))
    };
    let (bytes, data_coding) = if text.is_ascii() {
        (text.as_bytes().to_vec(), DataCoding::McSpecific)
    } else {
        (text.encode_utf16().flat_map(u16::to_be_bytes).collect(), DataCoding::Ucs2)
    };
    let (from_ton, from_npi) = numbering(from);
    let (to_ton, to_npi) = numbering(to);
    let builder = DeliverSm::builder()
        .source_addr_ton(from_ton)
        .source_addr_npi(from_npi)
        .source_addr(address(from)?)
        .dest_addr_ton(to_ton)
        .dest_addr_npi(to_npi)
        .destination_addr(address(to)?)
        .esm_class(EsmClass::from(0x00))
        .data_coding(data_coding);
    let builder = if bytes.len() <= MAX_SHORT_MESSAGE {
        let short_message = OctetString::from_vec(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        builder.short_message(short_message)
    } else {
        builder.tlvs(vec![MessageDeliveryRequestTlvValue::MessagePayload(MessagePayload::new(
            AnyOctetString::from_vec(bytes),
        ))])
    };
    Ok(builder.build())
}

/// Digits are an international number; anything else an alphanumeric sender.
fn numbering(address: &str) -> (Ton, Npi) {
    if !address.is_empty() && address.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::International, Npi::Isdn)
    } else {
        (Ton::Alphanumeric, Npi::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::Stream;
    use rusmpp::pdus::DeliverSmResp;
    use rusmpp::values::RegisteredDelivery;
    use rusmppc::{Client, ConnectionBuilder, Event};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bounds every wait so a broken SMSC fails the test instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(10);

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(PATIENCE, future).await.expect("within the patience")
    }

    async fn connect(port: u16) -> (Client, impl Stream<Item = Event> + Unpin) {
        ConnectionBuilder::new()
            .disable_interface_version_check()
            .connect(format!("smpp://127.0.0.1:{port}"))
            .await
            .expect("connect")
    }

    fn bind_as(system_id: &str, password: &str) -> BindTransceiver {
        BindTransceiver::builder()
            .system_id(COctetString::from_str(system_id).unwrap())
            .password(COctetString::from_str(password).unwrap())
            .interface_version(InterfaceVersion::Smpp3_4)
            .build()
    }

    async fn bound_client(port: u16) -> (Client, impl Stream<Item = Event> + Unpin) {
        let (client, events) = connect(port).await;
        client.bind_transceiver(bind_as("billpush", "secret")).await.expect("bind");
        (client, events)
    }

    fn sms(to: &str, text: &str) -> SubmitSm {
        SubmitSm::builder()
            .source_addr_ton(Ton::Alphanumeric)
            .source_addr(COctetString::from_str("BILLPUSH").unwrap())
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(COctetString::from_str(to).unwrap())
            .registered_delivery(RegisteredDelivery::from(1))
            .short_message(OctetString::from_vec(text.as_bytes().to_vec()).unwrap())
            .build()
    }

    /// The next command the SMSC sent that no request was waiting for.
    async fn incoming(events: &mut (impl Stream<Item = Event> + Unpin)) -> Command {
        match within(events.next()).await {
            Some(Event::Incoming(command)) => command,
            Some(Event::Error(error)) => panic!("connection failed: {error}"),
            None => panic!("the event stream ended"),
        }
    }

    fn deliver_sm(command: Command) -> DeliverSm {
        match command.pdu() {
            Some(Pdu::DeliverSm(deliver)) => deliver.clone(),
            other => panic!("expected deliver_sm, got {other:?}"),
        }
    }

    fn tlv(deliver: &DeliverSm, wanted: fn(&TlvValue) -> bool) -> Option<TlvValue> {
        deliver.tlvs().iter().filter_map(|tlv| tlv.value()).find(|value| wanted(value)).cloned()
    }

    #[tokio::test]
    async fn binds_with_the_right_credentials_only() {
        let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();

        let (client, _events) = connect(smsc.port()).await;
        let resp = client.bind_transceiver(bind_as("billpush", "secret")).await.expect("bind");
        assert_eq!(resp.system_id.as_str(), "TESTSMSC");
        assert_eq!(resp.sc_interface_version(), Some(InterfaceVersion::Smpp3_4));
        assert_eq!((smsc.binds(), smsc.bound()), (1, 1));

        let (refused, _events) = connect(smsc.port()).await;
        match refused.bind_transceiver(bind_as("billpush", "wrong")).await {
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                assert_eq!(response.id(), CommandId::BindTransceiverResp);
                assert_eq!(response.status(), CommandStatus::EsmeRbindfail);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Not bound, so a submit is refused too.
        match refused.submit_sm(sms("491701234567", "early")).await {
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                assert_eq!(response.id(), CommandId::GenericNack);
                assert_eq!(response.status(), CommandStatus::EsmeRinvbndsts);
            }
            other => panic!("expected a generic_nack, got {other:?}"),
        }
        assert_eq!((smsc.binds(), smsc.bound()), (1, 1));
        assert!(smsc.submitted().is_empty());

        client.enquire_link().await.expect("enquire_link answered");
        client.unbind().await.expect("unbind answered");
        within(client.closed()).await;
        assert_eq!(smsc.unbinds(), 1);
        within(smsc.wait_until(|shared| shared.state().connections.len() == 1)).await;
        assert_eq!(smsc.bound(), 0);
    }

    #[tokio::test]
    async fn an_accepted_submit_gets_an_id_then_a_receipt() {
        let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
        smsc.set_receipt_stat("491709999999", "UNDELIV");
        let (client, mut events) = bound_client(smsc.port()).await;

        let resp = client.submit_sm(sms("491701234567", "Your bill: 12.30 EUR")).await.expect("accepted");
        assert_eq!(resp.message_id().as_str(), "1000");

        let command = incoming(&mut events).await;
        let sequence = command.sequence_number();
        let receipt = deliver_sm(command);
        assert_eq!(u8::from(receipt.esm_class), 0x04);
        assert_eq!(receipt.source_addr.as_str(), "491701234567");
        assert_eq!(receipt.destination_addr.as_str(), "BILLPUSH");
        assert_eq!(
            receipt.short_message().as_ref(),
            b"id:1000 sub:001 dlvrd:001 submit date:2610010000 done date:2610010000 stat:DELIVRD err:000 text:"
        );
        assert_eq!(
            tlv(&receipt, |v| matches!(v, TlvValue::ReceiptedMessageId(_))),
            Some(TlvValue::ReceiptedMessageId(COctetString::from_str("1000").unwrap()))
        );
        assert_eq!(
            tlv(&receipt, |v| matches!(v, TlvValue::MessageState(_))),
            Some(TlvValue::MessageState(MessageState::Delivered))
        );
        client.deliver_sm_resp(sequence, DeliverSmResp::default()).await.unwrap();
        within(smsc.wait_receipts_acknowledged(1)).await;

        let resp = client.submit_sm(sms("491709999999", "Your bill")).await.expect("accepted");
        assert_eq!(resp.message_id().as_str(), "1001");
        let receipt = deliver_sm(incoming(&mut events).await);
        let text = String::from_utf8(receipt.short_message().to_vec()).unwrap();
        assert!(text.starts_with("id:1001 sub:001 dlvrd:000 "), "{text}");
        assert!(text.ends_with("stat:UNDELIV err:001 text:"), "{text}");
        assert_eq!(
            tlv(&receipt, |v| matches!(v, TlvValue::MessageState(_))),
            Some(TlvValue::MessageState(MessageState::Undeliverable))
        );
        assert_eq!(smsc.receipts_sent(), 2);
        assert_eq!(smsc.receipts_acknowledged(), 1);

        let submitted = smsc.submitted();
        assert_eq!(submitted.len(), 2);
        let first = &submitted[0];
        assert_eq!(
            (first.connection, first.source.as_str(), first.destination.as_str()),
            (1, "BILLPUSH", "491701234567")
        );
        assert_eq!((first.source_ton, first.source_npi, first.registered_delivery), (5, 0, 1));
        assert_eq!(first.short_message, b"Your bill: 12.30 EUR");
        assert_eq!(first.message_payload, None);
        assert_eq!(first.message_id.as_deref(), Some("1000"));
    }

    #[tokio::test]
    async fn scripted_answers_come_in_order_then_ok() {
        let smsc = TestSmsc::start(SmscConfig { receipts: false, ..SmscConfig::default() }).await.unwrap();
        smsc.script([Answer::Status(CommandStatus::EsmeRthrottled), Answer::NoResponse]);
        let (client, mut events) = bound_client(smsc.port()).await;

        match client.submit_sm(sms("491701234567", "one")).await {
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                assert_eq!(response.id(), CommandId::SubmitSmResp);
                assert_eq!(response.status(), CommandStatus::EsmeRthrottled);
            }
            other => panic!("expected the scripted status, got {other:?}"),
        }
        // Never answered: sent without waiting, then the next one overtakes it.
        let unanswered = client.no_wait().submit_sm(sms("491701234567", "two")).await.unwrap();
        within(smsc.wait_submitted(2)).await;
        let resp = client.submit_sm(sms("491701234567", "three")).await.expect("ok after the script");
        assert_eq!(resp.message_id().as_str(), "1000");
        assert_eq!(smsc.peak_outstanding(), 2, "the unanswered one stays outstanding");

        let submitted = smsc.submitted();
        assert_eq!(submitted[1].sequence, unanswered);
        let ids: Vec<_> = submitted.iter().map(|s| s.message_id.as_deref()).collect();
        assert_eq!(ids, [None, None, Some("1000")]);

        // Drop: the connection closes instead of an answer.
        smsc.script([Answer::Drop]);
        let dropped = client.submit_sm(sms("491701234567", "four")).await;
        assert!(matches!(dropped, Err(rusmppc::error::Error::ConnectionClosed)), "{dropped:?}");
        within(client.closed()).await;
        assert!(
            std::iter::from_fn(|| events.next().now_or_never().flatten())
                .any(|event| matches!(event, Event::Error(rusmppc::error::Error::ConnectionClosedByPeer))),
            "the client saw the peer close"
        );
    }

    #[tokio::test]
    async fn held_answers_fill_the_window_until_released() {
        let smsc = TestSmsc::start(SmscConfig { receipts: false, ..SmscConfig::default() }).await.unwrap();
        let (client, _events) = bound_client(smsc.port()).await;
        smsc.hold(true);

        // One at a time into the window: rusmppc 0.4 writes only a few queued requests per
        // wake-up of its connection, and nothing else would wake it while answers are held.
        let mut submits = Vec::new();
        for i in 0..5 {
            let client = client.clone();
            submits.push(tokio::spawn(async move { client.submit_sm(sms("491701234567", &format!("{i}"))).await }));
            within(smsc.wait_submitted(i + 1)).await;
        }
        within(smsc.wait_held(5)).await;
        assert_eq!(smsc.held(), 5);
        assert_eq!(smsc.peak_outstanding(), 5);
        smsc.hold(false);
        assert_eq!(smsc.held(), 0);

        let mut ids = Vec::new();
        for submit in submits {
            let answer = within(submit).await.unwrap().expect("released");
            ids.push(answer.message_id().as_str().to_string());
        }
        ids.sort();
        assert_eq!(ids, ["1000", "1001", "1002", "1003", "1004"]);
        // Answered right away once released.
        client.submit_sm(sms("491701234567", "after")).await.expect("answered");
        assert_eq!(smsc.peak_outstanding(), 5);
    }

    #[tokio::test]
    async fn dropped_connections_are_seen_closed_and_can_bind_again() {
        let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
        let (client, mut events) = bound_client(smsc.port()).await;
        assert_eq!(smsc.bound(), 1);

        smsc.drop_connections();
        assert_eq!(smsc.bound(), 0);
        match within(events.next()).await {
            Some(Event::Error(rusmppc::error::Error::ConnectionClosedByPeer)) => {}
            other => panic!("expected the peer to close, got {other:?}"),
        }
        within(client.closed()).await;
        assert!(client.submit_sm(sms("491701234567", "lost")).await.is_err());

        let (_again, _events) = bound_client(smsc.port()).await;
        within(smsc.wait_bound(1)).await;
        assert_eq!(smsc.binds(), 2);
    }

    #[tokio::test]
    async fn subscriber_replies_arrive_as_deliver_sm() {
        let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
        let refused = smsc.send_mo("491701234567", "BILLPUSH", "STOP").await;
        assert_eq!(refused.map_err(|e| e.kind()), Err(io::ErrorKind::NotConnected));

        let (client, mut events) = bound_client(smsc.port()).await;
        smsc.send_mo("491701234567", "BILLPUSH", "STOP").await.unwrap();
        let command = incoming(&mut events).await;
        let sequence = command.sequence_number();
        let reply = deliver_sm(command);
        assert_eq!(u8::from(reply.esm_class), 0);
        assert_eq!(reply.data_coding, DataCoding::McSpecific);
        assert_eq!(reply.source_addr.as_str(), "491701234567");
        assert_eq!(reply.destination_addr.as_str(), "BILLPUSH");
        assert_eq!(reply.short_message().as_ref(), b"STOP");
        client.deliver_sm_resp(sequence, DeliverSmResp::default()).await.unwrap();
        within(smsc.wait_receipts_acknowledged(1)).await;

        smsc.send_mo("491701234567", "BILLPUSH", "Grüße").await.unwrap();
        let reply = deliver_sm(incoming(&mut events).await);
        assert_eq!(reply.data_coding, DataCoding::Ucs2);
        assert_eq!(reply.short_message().as_ref(), [0, b'G', 0, b'r', 0, 0xFC, 0, b'\xDF', 0, b'e']);

        let long = "x".repeat(300);
        smsc.send_mo("491701234567", "BILLPUSH", &long).await.unwrap();
        let reply = deliver_sm(incoming(&mut events).await);
        assert!(reply.short_message().is_empty());
        match tlv(&reply, |v| matches!(v, TlvValue::MessagePayload(_))) {
            Some(TlvValue::MessagePayload(payload)) => assert_eq!(payload.value.as_ref(), long.as_bytes()),
            other => panic!("expected message_payload, got {other:?}"),
        }
        assert_eq!(smsc.receipts_sent(), 0, "replies are not receipts");
    }

    #[tokio::test]
    async fn a_malformed_pdu_closes_only_that_connection() {
        let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
        let (client, _events) = bound_client(smsc.port()).await;

        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", smsc.port())).await.unwrap();
        // A command_length of 15 is shorter than the header itself.
        raw.write_all(&[0, 0, 0, 15, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1]).await.unwrap();
        let mut rest = Vec::new();
        let read = within(raw.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(0)) || read.is_err(), "closed: {read:?}");

        client.submit_sm(sms("491701234567", "still here")).await.expect("the other connection serves on");
    }

    #[tokio::test]
    async fn serves_tls() {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let chain = vec![certified.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let smsc =
            TestSmsc::start(SmscConfig { tls: Some((chain.clone(), key)), ..SmscConfig::default() }).await.unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(chain[0].clone()).unwrap();
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let (client, _events) = ConnectionBuilder::new()
            .disable_interface_version_check()
            .rustls_config(tls)
            .connect(format!("smpps://127.0.0.1:{}", smsc.port()))
            .await
            .expect("TLS connect");
        client.bind_transceiver(bind_as("billpush", "secret")).await.expect("bind over TLS");
        let resp = client.submit_sm(sms("491701234567", "over TLS")).await.expect("accepted");
        assert_eq!(resp.message_id().as_str(), "1000");
        assert_eq!(smsc.submitted()[0].short_message, b"over TLS");
    }
}
