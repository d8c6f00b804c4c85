//! In-process queue for single-machine runs without a broker. Like a broker queue, a
//! delivery stays in flight until acked, and consumers keep waiting while anything is in
//! flight or delayed, because it could still come back. Publishing waits while the queue
//! holds its capacity, so a month of any size takes the same memory: the database, not
//! the queue, holds what is owed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Acker, Delivery, Queue, QueueError, QueueMessage};

struct State {
    capacity: usize,
    ready: VecDeque<QueueMessage>,
    in_flight: usize,
    delayed: usize,
    dead: Vec<QueueMessage>,
    closed: bool,
}

#[derive(Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl MemoryQueue {
    /// A queue that makes publishers wait while it holds `capacity` ready messages.
    pub fn new(capacity: usize) -> Self {
        let state =
            State { capacity, ready: VecDeque::new(), in_flight: 0, delayed: 0, dead: Vec::new(), closed: false };
        MemoryQueue { state: Arc::new(Mutex::new(state)), changed: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock is never held across a panic")
    }

    /// No more publishing: consumers stop once what is left has been acked.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Messages parked on the dead-letter path.
    pub fn dead_letters(&self) -> Vec<QueueMessage> {
        self.lock().dead.clone()
    }

    fn push(&self, message: QueueMessage) {
        self.lock().ready.push_back(message);
        self.changed.notify_waiters();
    }
}

struct MemoryAcker(MemoryQueue);

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.0.lock().in_flight -= 1;
        self.0.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    /// Four hundred, four times the broker's: the embedded push is bound by SQLite's one
    /// writer, which takes a claim and an outcome transaction per message, and a message here
    /// costs no network.
    fn ids_per_message(&self) -> usize {
        400
    }

    fn durable(&self) -> bool {
        false
    }

    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(QueueError::Closed);
                }
                if state.ready.len() < state.capacity {
                    state.ready.extend(messages.iter().cloned());
                    break;
                }
            }
            changed.await;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    async fn publish_later(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        self.lock().delayed += 1;
        let queue = self.clone();
        let message = message.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.lock().delayed -= 1;
            queue.push(message);
        });
        Ok(())
    }

    async fn publish_dead(&self, message: &QueueMessage) -> Result<(), QueueError> {
        self.lock().dead.push(message.clone());
        Ok(())
    }

    async fn next(&self, stop: &CancellationToken) -> Result<Option<Delivery>, QueueError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register interest before looking, so a change between the look and the wait is not missed.
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(message) = state.ready.pop_front() {
                    state.in_flight += 1;
                    drop(state);
                    // A publisher may be waiting for room.
                    self.changed.notify_waiters();
                    return Ok(Some(Delivery::new(message, Box::new(MemoryAcker(self.clone())))));
                }
                if state.closed && state.in_flight == 0 && state.delayed == 0 {
                    return Ok(None);
                }
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = changed => {}
            }
        }
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.lock().ready.len() as u64)
    }

    async fn waiting(&self) -> Result<u64, QueueError> {
        let state = self.lock();
        Ok((state.ready.len() + state.delayed) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ids: &[&str]) -> QueueMessage {
        QueueMessage { notification_ids: ids.iter().map(|s| s.to_string()).collect() }
    }

    #[tokio::test]
    async fn a_consumer_ends_only_after_close_and_the_last_ack() {
        let queue = MemoryQueue::new(16);
        let stop = CancellationToken::new();
        queue.publish(&[message(&["a"]), message(&["b", "c"])]).await.unwrap();
        queue.close();
        assert!(queue.publish(&[message(&["late"])]).await.is_err());
        let first = queue.next(&stop).await.unwrap().unwrap();
        assert_eq!(first.message, message(&["a"]));
        let second = queue.next(&stop).await.unwrap().unwrap();
        let waiting = tokio::spawn({
            let (queue, stop) = (queue.clone(), stop.clone());
            async move { queue.next(&stop).await.unwrap().is_none() }
        });
        first.ack().await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "must not end while b,c is unacked");
        second.ack().await.unwrap();
        assert!(waiting.await.unwrap(), "ends once everything is acked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_message_comes_back_and_keeps_the_queue_open() {
        let queue = MemoryQueue::new(16);
        let stop = CancellationToken::new();
        queue.publish_later(&message(&["r"]), Duration::from_secs(5)).await.unwrap();
        queue.close();
        let delivery = queue.next(&stop).await.unwrap().expect("the retry arrives before the queue ends");
        assert_eq!(delivery.message, message(&["r"]));
        delivery.ack().await.unwrap();
        assert!(queue.next(&stop).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_publisher_wait_for_a_consumer() {
        let queue = MemoryQueue::new(2);
        let stop = CancellationToken::new();
        queue.publish(&[message(&["a"]), message(&["b"])]).await.unwrap();
        let publishing = tokio::spawn({
            let queue = queue.clone();
            async move { queue.publish(&[message(&["c"])]).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!publishing.is_finished(), "two ready messages fill a queue of two");
        assert_eq!(queue.depth().await.unwrap(), 2);
        let first = queue.next(&stop).await.unwrap().unwrap();
        publishing.await.unwrap().unwrap();
        assert_eq!(first.message, message(&["a"]));
        assert_eq!(queue.depth().await.unwrap(), 2, "b and c");
    }

    #[tokio::test]
    async fn stop_ends_a_waiting_consumer() {
        let queue = MemoryQueue::new(16);
        let stop = CancellationToken::new();
        let consumer = tokio::spawn({
            let (queue, stop) = (queue.clone(), stop.clone());
            async move { queue.next(&stop).await.unwrap().is_none() }
        });
        stop.cancel();
        assert!(consumer.await.unwrap());
    }
}
