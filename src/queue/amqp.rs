//! RabbitMQ through lapin. Topology, all durable, named from `queue.name`:
//! - `NAME`: quorum queue the workers consume; rejected messages dead-letter to `NAME.dead`;
//! - `NAME.delay.<ms>`: holding queues, one per power-of-two delay; a message waits there for
//!   its own jittered delay (per-message expiration), then dead-letters back to `NAME`. They are
//!   quorum queues too, so a delayed retry survives the loss of a cluster's node, and their
//!   dead-lettering is at-least-once (a copy too many is harmless, a lost one is not). Releases
//!   before them used classic `NAME.retry.<ms>` queues: those empty themselves into `NAME`
//!   within their delay and may then be deleted;
//! - `NAME.dead`: notifications that failed for good, for the operator.
//!
//! Messages are persistent and every publish waits for the broker's confirm (pipelined: a
//! batch is sent, then its confirms awaited). Publishing and consuming use separate
//! connections, and both reconnect after a broker restart or a dropped connection; an ack
//! lost in that moment only means the message comes again, which the database makes harmless.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Acker, Delivery, Queue, QueueError, QueueMessage};

/// How long publishing keeps trying to reach the broker before giving up.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(120);
/// Persistent delivery mode: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

struct Link {
    connection: Connection,
    channel: Channel,
    declared_delays: HashSet<u64>,
}

struct Consuming {
    connection: Connection,
    consumer: Consumer,
}

/// Where the broker is and how its queues are used.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    pub url: String,
    /// Prefix of the queue names (`NAME`, `NAME.delay.*`, `NAME.dead`).
    pub name: String,
    /// Unacked messages a consumer holds at once.
    pub prefetch: u16,
    /// Extra trust roots for `amqps://`.
    pub tls: OwnedTLSConfig,
}

pub struct AmqpQueue {
    /// The brokers to try, in order from the one that answered last: one URL, or the nodes
    /// of a cluster (`queue.url` separated by commas).
    urls: Vec<String>,
    /// The index in `urls` of the broker that answered last.
    current: std::sync::atomic::AtomicUsize,
    name: String,
    prefetch: u16,
    tls: OwnedTLSConfig,
    publishing: Mutex<Option<Link>>,
    consuming: Mutex<Option<Consuming>>,
}

fn broker(error: lapin::Error) -> QueueError {
    QueueError::Broker(error.to_string())
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

/// The holding queue for a delay: the next power of two in milliseconds, at least 64.
/// The longest delay a retry is ever given (the push's backoff cap and any Retry-After).
pub const LONGEST_DELAY: Duration = Duration::from_secs(3600);

fn delay_tier(delay: Duration) -> u64 {
    (delay.as_millis() as u64).max(64).next_power_of_two()
}

impl AmqpQueue {
    /// Connects and declares the topology, so a wrong URL or broker fails at start.
    pub async fn connect(settings: &AmqpSettings) -> Result<AmqpQueue, QueueError> {
        let queue = AmqpQueue {
            urls: settings.url.split(',').map(|url| url.trim().to_string()).filter(|url| !url.is_empty()).collect(),
            current: std::sync::atomic::AtomicUsize::new(0),
            name: settings.name.clone(),
            prefetch: settings.prefetch,
            tls: settings.tls.clone(),
            publishing: Mutex::new(None),
            consuming: Mutex::new(None),
        };
        let link = queue.open_link().await?;
        *queue.publishing.lock().await = Some(link);
        Ok(queue)
    }

    async fn open_connection(&self, role: &str) -> Result<Connection, QueueError> {
        let properties = ConnectionProperties::default().with_connection_name(format!("billpush {role}").into());
        // `amqps://` is TLS or nothing: lapin is built with rustls, so the scheme cannot be
        // opened in plain text.
        let runtime = lapin::runtime::default_runtime().map_err(broker)?;
        // The broker that answered last first, then the others in turn: a cluster's node that
        // went away is passed over, and one that comes back is used again when its turn comes.
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut failures = Vec::new();
        for offset in 0..self.urls.len() {
            let index = (first + offset) % self.urls.len();
            let url = &self.urls[index];
            match Connection::connect_with_config(url, properties.clone(), self.tls.clone(), runtime.clone()).await {
                Ok(connection) => {
                    if offset > 0 {
                        tracing::warn!(
                            broker = index + 1,
                            of = self.urls.len(),
                            "connected to another broker of the cluster"
                        );
                    }
                    self.current.store(index, std::sync::atomic::Ordering::Relaxed);
                    return Ok(connection);
                }
                // Which broker of the list, never its URL: it may hold the password.
                Err(error) => failures.push(format!("broker {} of {}: {error}", index + 1, self.urls.len())),
            }
        }
        Err(QueueError::Broker(failures.join("; ")))
    }

    async fn open_link(&self) -> Result<Link, QueueError> {
        let connection = self.open_connection("publisher").await?;
        let channel = connection.create_channel().await.map_err(broker)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker)?;
        let mut main = FieldTable::default();
        // Quorum queues replicate across a cluster and survive a node's loss.
        main.insert("x-queue-type".into(), text("quorum"));
        main.insert("x-dead-letter-exchange".into(), text(""));
        main.insert("x-dead-letter-routing-key".into(), text(&format!("{}.dead", self.name)));
        channel.queue_declare(self.name.as_str().into(), durable(), main).await.map_err(broker)?;
        let mut dead = FieldTable::default();
        dead.insert("x-queue-type".into(), text("quorum"));
        channel.queue_declare(format!("{}.dead", self.name).into(), durable(), dead).await.map_err(broker)?;
        Ok(Link { connection, channel, declared_delays: HashSet::new() })
    }

    /// The publishing link, opened again if the connection was lost.
    async fn connected_link<'g>(&self, guard: &'g mut Option<Link>) -> Result<&'g mut Link, QueueError> {
        if guard.as_ref().is_none_or(|link| !link.connection.status().connected()) {
            *guard = Some(self.open_link().await?);
        }
        Ok(guard.as_mut().expect("link just opened"))
    }

    /// A holding queue: its messages return to the main queue `name` after `tier` ms at most.
    fn delay_arguments(name: &str, tier: u64) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), text("quorum"));
        // At-least-once dead-lettering needs publishers refused, not messages dropped, when full.
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        arguments.insert("x-overflow".into(), text("reject-publish"));
        arguments.insert("x-dead-letter-exchange".into(), text(""));
        arguments.insert("x-dead-letter-routing-key".into(), text(name));
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(tier as i64));
        arguments
    }

    fn delay_queue(name: &str, tier: u64) -> String {
        format!("{name}.delay.{tier}")
    }

    async fn declare_delay(link: &mut Link, name: &str, tier: u64) -> Result<String, QueueError> {
        let queue = Self::delay_queue(name, tier);
        if link.declared_delays.insert(tier) {
            let arguments = Self::delay_arguments(name, tier);
            if let Err(error) = link.channel.queue_declare(queue.as_str().into(), durable(), arguments).await {
                link.declared_delays.remove(&tier);
                return Err(broker(error));
            }
        }
        Ok(queue)
    }

    /// Publishes to `queue` (a delay tier when `delay` is set), pipelined, and waits for every
    /// confirm; reconnects and starts the batch again after a broker failure. A message confirmed
    /// before the failure may then be queued twice, which the database makes harmless.
    async fn publish_to(
        &self,
        target: Option<&str>,
        messages: &[QueueMessage],
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.try_publish(target, messages, delay).await {
                Ok(()) => return Ok(()),
                Err(QueueError::Refused) => return Err(QueueError::Refused),
                Err(error) if started.elapsed() > PUBLISH_PATIENCE => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "publishing failed; reconnecting to the broker");
                    *self.publishing.lock().await = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_publish(
        &self,
        target: Option<&str>,
        messages: &[QueueMessage],
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        let mut guard = self.publishing.lock().await;
        let link = self.connected_link(&mut guard).await?;
        let mut properties =
            BasicProperties::default().with_delivery_mode(PERSISTENT).with_content_type("application/json".into());
        let routing_key = match (target, delay) {
            (Some(queue), _) => queue.to_string(),
            (None, Some(delay)) => {
                properties = properties.with_expiration(ShortString::from(delay.as_millis().to_string()));
                Self::declare_delay(link, &self.name, delay_tier(delay)).await?
            }
            (None, None) => self.name.clone(),
        };
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let payload = serde_json::to_vec(message).expect("plain data serialises");
            let confirm = link
                .channel
                .basic_publish(
                    "".into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    properties.clone(),
                )
                .await
                .map_err(broker)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(broker)? {
                Confirmation::Ack(_) => {}
                Confirmation::Nack(_) | Confirmation::NotRequested => return Err(QueueError::Refused),
            }
        }
        Ok(())
    }

    async fn open_consumer(&self) -> Result<Consuming, QueueError> {
        let connection = self.open_connection("worker").await?;
        let channel = connection.create_channel().await.map_err(broker)?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(broker)?;
        let consumer = channel
            .basic_consume(self.name.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(broker)?;
        Ok(Consuming { connection, consumer })
    }

    /// Closes the connections; unacked messages go back to the queue.
    pub async fn close(&self) {
        if let Some(consuming) = self.consuming.lock().await.take() {
            // The connection may already be gone; closing is best effort.
            let _ = consuming.connection.close(200, "billpush stopping".into()).await;
        }
        if let Some(link) = self.publishing.lock().await.take() {
            let _ = link.connection.close(200, "billpush stopping".into()).await;
        }
    }
}

struct AmqpAcker(lapin::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.0.ack(BasicAckOptions::default()).await.map(drop).map_err(broker)
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    /// A hundred: 3.9 KB messages, and a redelivery after a broker or worker crash re-claims
    /// at most a hundred notifications.
    fn ids_per_message(&self) -> usize {
        100
    }

    fn durable(&self) -> bool {
        true
    }

    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        self.publish_to(None, messages, None).await
    }

    async fn publish_later(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        self.publish_to(None, std::slice::from_ref(message), Some(delay)).await
    }

    async fn publish_dead(&self, message: &QueueMessage) -> Result<(), QueueError> {
        self.publish_to(Some(&format!("{}.dead", self.name)), std::slice::from_ref(message), None).await
    }

    async fn next(&self, stop: &CancellationToken) -> Result<Option<Delivery>, QueueError> {
        let mut pause = Duration::from_millis(100);
        let mut guard = self.consuming.lock().await;
        loop {
            if stop.is_cancelled() {
                if let Some(consuming) = guard.take() {
                    let _ = consuming.connection.close(200, "billpush stopping".into()).await;
                }
                return Ok(None);
            }
            if guard.is_none() {
                match self.open_consumer().await {
                    Ok(consuming) => {
                        *guard = Some(consuming);
                        pause = Duration::from_millis(100);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot consume; retrying");
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let consuming = guard.as_mut().expect("consumer just opened");
            let item = tokio::select! {
                () = stop.cancelled() => continue,
                item = consuming.consumer.next() => item,
            };
            match item {
                Some(Ok(delivery)) => match serde_json::from_slice::<QueueMessage>(&delivery.data) {
                    Ok(message) => return Ok(Some(Delivery::new(message, Box::new(AmqpAcker(delivery.acker))))),
                    Err(error) => {
                        tracing::error!(%error, "unreadable queue message sent to the dead-letter queue");
                        // Rejected without requeue, the broker dead-letters it.
                        let _ = delivery
                            .acker
                            .nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() })
                            .await;
                    }
                },
                Some(Err(error)) => {
                    tracing::warn!(%error, "lost the broker while consuming; reconnecting");
                    *guard = None;
                }
                None => {
                    tracing::warn!("the broker cancelled the consumer; reconnecting");
                    *guard = None;
                }
            }
        }
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let mut guard = self.publishing.lock().await;
        let link = self.connected_link(&mut guard).await?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = link
            .channel
            .queue_declare(self.name.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(broker)?;
        Ok(u64::from(queue.message_count()))
    }

    async fn waiting(&self) -> Result<u64, QueueError> {
        let mut waiting = self.depth().await?;
        let mut guard = self.publishing.lock().await;
        let link = self.connected_link(&mut guard).await?;
        // Declaring every holding queue (as publishing would) answers its count without the
        // 404 a passive look at a never-used one would bring.
        let mut tier = delay_tier(Duration::ZERO);
        while tier <= delay_tier(LONGEST_DELAY) {
            let name = Self::delay_queue(&self.name, tier);
            let queue = link
                .channel
                .queue_declare(name.as_str().into(), durable(), Self::delay_arguments(&self.name, tier))
                .await
                .map_err(broker)?;
            link.declared_delays.insert(tier);
            waiting += u64::from(queue.message_count());
            tier *= 2;
        }
        Ok(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_share_holding_queues_by_power_of_two() {
        assert_eq!(delay_tier(Duration::from_millis(1)), 64);
        assert_eq!(delay_tier(Duration::from_millis(1000)), 1024);
        assert_eq!(delay_tier(Duration::from_millis(1024)), 1024);
        assert_eq!(delay_tier(Duration::from_millis(1025)), 2048);
    }
}
